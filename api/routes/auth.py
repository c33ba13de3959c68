"""Routes under ``/auth-service``: sign-in (a workflow), token re-issue, sign-out and resign (the
profile and block routes under the same prefix are ``api.routes.profile``).

Sign-in and re-issue answer with the token headers spelled exactly as the iOS client looks them up
(``Authorization``, ``authorization-refresh``, ``email``); see ``token_headers``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from accounts.emails import normalize_email, same_account
from accounts.nicknames import visible_nickname
from accounts.pkce import challenge_matches
from accounts.tokens import BEARER, REFRESH, InvalidToken, TokenClaims, strip_bearer
from api import outbox
from api.bodies import (
    AccountResult,
    AuthorizeCodeBody,
    SignInBody,
)
from api.deps import ResourcesDep, SessionDep, TemporalDep
from api.errors import BadRequest, Forbidden, NotTheCaller, error_responses
from api.forms import (
    AuthorizeCodeForm,
    ResignForm,
    SignInForm,
)
from api.params import ClientRoute
from api.rate_limits import limit_sign_in
from api.request_context import bind_user, bind_workflow
from api.resources import Resources, ServiceUnavailable
from api.revocations import publish_revocations
from api.security import CurrentUser, EmailHeader, RefreshTokenHeader, header_text
from storage import logins, sign_in_requests, users
from storage.db import retry_deadlocks
from storage.models import Revocation
from storage.outbox import QueuedStart
from temporal import search_attributes as sa
from temporal.accounts import PROVIDERS, ResignInput, SignInInput, SignInResult
from temporal.ids import sign_in_workflow_id
from temporal.task_queues import SIGN_IN, named
from workflows.sign_in import SignInWorkflow

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/auth-service", tags=["auth"], route_class=ClientRoute, responses=error_responses(400, 403, 503)
)

#: The multipart body most endpoints take (the model is the whole form).
Multipart = Form(media_type="multipart/form-data")
#: The token headers signIn and reIssueToken answer with (CLIENT_CONTRACT §2.2).
TOKEN_HEADERS = {
    "Authorization": {
        "description": "the access token, `Bearer <jwt>`: send it back as is in `Authorization`",
        "schema": {"type": "string"},
    },
    "authorization-refresh": {
        "description": "the refresh token, `Bearer <jwt>`: send it to reIssueToken in `Authorization-refresh`",
        "schema": {"type": "string"},
    },
}
EMAIL_HEADER = {
    "email": {
        "description": "the account e-mail `<email>+<provider>`: send it back in `Email`",
        "schema": {"type": "string"},
    }
}


def token_headers(
    response: Response, access: str, refresh: str, account_email: str | None = None
) -> Response:
    """Add the token headers with the exact spelling the client's case-sensitive lookup needs.

    Starlette lower-cases names set through ``response.headers``; raw header tuples go to the wire as
    given, so ``Authorization`` and ``email`` keep their case.
    """
    response.raw_headers.append((b"Authorization", f"{BEARER}{access}".encode()))
    response.raw_headers.append((b"authorization-refresh", f"{BEARER}{refresh}".encode()))
    if account_email is not None:
        response.raw_headers.append((b"email", account_email.encode()))
    return response


def _issue(
    res: Resources, account_email: str, user_id: int, session_id: str, generation: int
) -> tuple[str, str]:
    return res.tokens.pair(account_email, user_id, session_id, generation)


@router.post(
    "/getAuthorizeCode",
    dependencies=[Depends(limit_sign_in)],
    responses=error_responses(429),
    openapi_extra={"security": []},
)
def get_authorize_code(
    form: Annotated[AuthorizeCodeForm, Multipart], session: SessionDep, res: ResourcesDep
) -> AuthorizeCodeBody:
    """Start of the PKCE-like sign-in: store the challenge under a new single-use code.

    From `/docs`: make a verifier (e.g. `k3PqZ8aLw0mT9xRb2VdN`) and send its SHA-512 as `codeChallenge`
    (`printf %s k3PqZ8aLw0mT9xRb2VdN | sha512sum`:
    `ae800f71839a59573fdccbb6d7c06aa02f4b636335cd7a67a7f65961a0343b40cefab95d900b26b0ea7dc557e614ab0f3b195c90115e11e9ac3891c55b2cf062`),
    then present the code with the verifier to signIn."""
    code = logins.create_authorize_code(session, form.code_challenge, res.settings.authorize_code_ttl_seconds)
    session.commit()
    return AuthorizeCodeBody(authorize_code=code)


_REFUSED_CODE = {
    logins.Redemption.UNKNOWN: "this authorize code is unknown",
    logins.Redemption.EXPIRED: "this authorize code has expired",
    logins.Redemption.USED: "this authorize code was already used",
    logins.Redemption.MISMATCH: "the code verifier does not match this authorize code",
}


def _redeem_and_store(
    res: Resources,
    code: str,
    verifier: str,
    *,
    email: str,
    provider: str,
    provider_id: str,
    device_token: str,
    apple_code: str,
) -> str:
    """Consume ``code`` for ``verifier`` and store the validated sign-in for ``SignInWorkflow`` to read by
    id (``storage.sign_in_requests``), in one short transaction (one commit on the login path, and a
    code is never used up by a request that was not stored); the request's id, or ``Forbidden`` saying
    why the code was refused."""

    def redeem_and_store() -> str | logins.Redemption:
        with res.sessions.begin() as session:
            outcome = logins.redeem_authorize_code(session, code, lambda ch: challenge_matches(ch, verifier))
            if outcome is not logins.Redemption.REDEEMED:
                return outcome
            return sign_in_requests.create(
                session,
                email=email,
                provider=provider,
                provider_id=provider_id,
                device_token=device_token,
                apple_authorization_code=apple_code,
            )

    stored = retry_deadlocks(redeem_and_store)
    if isinstance(stored, logins.Redemption):
        raise Forbidden(_REFUSED_CODE[stored])
    return stored


@router.post(
    "/signIn",
    dependencies=[Depends(limit_sign_in)],
    response_model=SignInBody,
    responses={200: {"headers": TOKEN_HEADERS | EMAIL_HEADER}, **error_responses(429)},
    openapi_extra={"security": []},
)
async def sign_in(
    form: Annotated[SignInForm, Multipart], res: ResourcesDep, temporal: TemporalDep
) -> Response:
    """Check the input, redeem the authorize code with its verifier, then run ``SignInWorkflow`` and
    answer with tokens in headers. Nothing is written for a refused request, and no workflow starts.

    From `/docs`: copy the `Authorization` and `email` response headers into **Authorize**
    (`accessToken` and `email`) to call the other endpoints."""
    provider = form.provider
    if provider not in PROVIDERS:
        raise Forbidden(f"unknown provider {provider!r}")
    email = form.email
    provider_id = form.provider_id
    verifier = form.code_verifier
    code = form.authorize_code
    authorization_code = form.authorization_code
    device_token = form.device_token
    if provider == "apple" and not authorization_code:
        raise BadRequest("authorizationCode is required for Apple sign-in")
    request_id = await run_in_threadpool(
        partial(
            _redeem_and_store,
            res,
            code,
            verifier,
            email=email,
            provider=provider,
            provider_id=provider_id,
            device_token=device_token,
            apple_code=authorization_code,
        )
    )
    # Only the stored request's id and non-secret options enter the workflow's history.
    req = SignInInput(
        request_id=request_id,
        provider=provider,  # type: ignore[arg-type]
        refresh_ttl_seconds=res.settings.refresh_token_ttl_seconds,
    )
    workflow_id = sign_in_workflow_id(code)
    bind_workflow(workflow_id)
    try:
        result: SignInResult = await temporal.execute_workflow(
            SignInWorkflow.run,
            req,
            id=workflow_id,
            # Eager: this process's own sign-in worker (api.sign_in_worker) gets the first task in the
            # start response when it has a free slot; otherwise the worker pool takes it from the queue.
            task_queue=named(SIGN_IN, res.settings.temporal_task_queue_prefix),
            request_eager_start=True,
            # With no worker to run it (pool and eager worker both down), the server times the run
            # out: the client gets a 503, and no login is opened later for a client that gave up.
            execution_timeout=timedelta(seconds=res.settings.sign_in_timeout_seconds),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, "sign-in")]),
        )
    except WorkflowAlreadyStartedError:
        raise Forbidden("this authorize code was already used") from None
    except WorkflowFailureError as exc:
        log.error("sign-in workflow failed: %s", exc.cause)
        raise ServiceUnavailable("sign-in") from exc
    except RPCError as exc:  # Temporal went away after the code was redeemed: the app asks for a new one
        log.warning("sign-in workflow not run: %s", exc)
        raise ServiceUnavailable("temporal") from exc
    finally:
        account_email = await run_in_threadpool(_finish_request, res, request_id)
    if result.status == "forbidden":
        raise Forbidden(result.reason)
    if result.status == "unavailable":
        raise ServiceUnavailable("apple")
    if account_email is None:  # resigned between the login opening and now
        raise Forbidden("the account no longer exists")
    bind_user(result.user_id)
    access, refresh = _issue(res, account_email, result.user_id, result.session_id, 0)
    body = SignInBody(nickname=visible_nickname(result.nickname)).model_dump_json()
    response = Response(body, media_type="application/json")
    return token_headers(response, access, refresh, account_email)


def _finish_request(res: Resources, request_id: str) -> str | None:
    """Delete the answered request; the account e-mail of the login it opened (``None`` when none)."""

    def finish() -> str | None:
        with res.sessions.begin() as session:
            row = sign_in_requests.get(session, request_id)
            user = users.by_id(session, row.user_id) if row is not None and row.user_id is not None else None
            sign_in_requests.remove(session, request_id)
            return user.account_email if user is not None and not users.is_resigning(user) else None

    return retry_deadlocks(finish)


async def reissue_token(refresh_token: RefreshTokenHeader, email: EmailHeader, res: ResourcesDep) -> Response:
    """Rotate the refresh token. The current one rotates; the one just rotated, within the grace window,
    gets the current pair (the client's parallel re-issues); any other is reuse and revokes the login.
    The answer is an empty 200 with the new tokens in its headers; the client sends GET."""
    try:
        claims = res.tokens.verify(strip_bearer(refresh_token), REFRESH)
    except InvalidToken as exc:
        raise Forbidden(f"invalid refresh token: {exc}") from None
    if not same_account(header_text(email), claims.account_email):
        raise Forbidden("the Email header does not match the refresh token")
    outcome = await run_in_threadpool(_rotate, res, claims)
    if outcome.rotation is logins.Rotation.REUSED:
        log.warning("refresh token reuse: login %s revoked", claims.session_id)
        if outcome.revocation is not None:
            await publish_revocations(res, claims.user_id, [outcome.revocation])
        raise Forbidden("this refresh token was already used; the login is revoked")
    if outcome.rotation is logins.Rotation.INVALID:
        raise Forbidden("this login was signed out, revoked or expired")
    # A token minted before e-mails had one canonical form gets its successor in that form.
    account = normalize_email(claims.account_email)
    access, refresh = _issue(res, account, claims.user_id, claims.session_id, outcome.generation)
    return token_headers(Response(status_code=200), access, refresh)


# Any method, as the original (the client sends GET); one operation per method in the spec.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/reIssueToken",
        reissue_token,
        methods=[_method],
        operation_id="reIssueToken" if _method == "GET" else f"reIssueToken{_method.title()}",
        response_class=Response,
        responses={
            200: {"description": "empty; the new tokens are in the headers", "headers": TOKEN_HEADERS}
        },
    )


def _rotate(res: Resources, claims: TokenClaims) -> logins.RotationResult:
    """One transaction (in the threadpool, so parallel re-issues really run in parallel)."""
    with res.sessions.begin() as session:
        return logins.rotate_session(
            session,
            claims.session_id,
            claims.generation,
            res.settings.refresh_token_ttl_seconds,
            res.settings.refresh_reuse_grace_seconds,
        )


@router.post("/signOut")
async def sign_out(user: CurrentUser, res: ResourcesDep) -> AccountResult:
    """Revoke this login and forget its device token."""

    def revoke() -> Revocation | None:  # in the threadpool: a lock wait must not stall the event loop
        with res.sessions.begin() as session:  # the revocation forgets the login's devices too
            return logins.revoke_session(session, user.session_id)

    revocation = await run_in_threadpool(revoke)
    if revocation is not None:
        await publish_revocations(res, user.id, [revocation])
    return AccountResult(email=user.account_email, success=True)


@router.post("/resign")
async def resign(
    form: Annotated[ResignForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> AccountResult:
    """Revoke every login at once, then run ``ResignWorkflow`` to remove the user's data everywhere.

    The start is queued with the revocation (``api.outbox``): once the logins are revoked the resign
    is certain to run, even when Temporal is down right now (the answer is 200 either way). The
    account's e-mail is freed in the same transaction (``users.release_sign_in_key``), so signing up
    again while the resign runs opens a new account instead of reopening the one being deleted.
    """
    email = form.email or user.account_email
    if not same_account(email, user.account_email):
        raise NotTheCaller("email must be the caller's own account")

    def revoke_all() -> tuple[list[Revocation], QueuedStart]:  # in the threadpool (row lock)
        with res.sessions.begin() as session:
            row = users.by_id_locked(session, user.id)
            if row is None or users.is_resigning(row):
                raise Forbidden("the account no longer exists")
            req = ResignInput(user_id=row.id, provider=row.provider)
            users.release_sign_in_key(row)
            revoked = logins.revoke_user_sessions(session, user.id)
            return revoked, outbox.queue_resign(session, req)

    revoked, queued = await run_in_threadpool(revoke_all)
    await publish_revocations(res, user.id, revoked)
    bind_workflow(queued.workflow_id)
    await outbox.start_now(res, queued)
    return AccountResult(email=email, success=True)
