"""Routes under ``/auth-service``: sign-in (a workflow), token re-issue, sign-out, profile and blocks.

Sign-in and re-issue answer with the token headers spelled exactly as the iOS client looks them up
(``Authorization``, ``authorization-refresh``, ``email``); see ``token_headers``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from accounts.emails import MAX_EMAIL_LENGTH, InvalidEmail, normalize_email, same_account, validated_email
from accounts.nicknames import visible_nickname
from accounts.pkce import challenge_matches
from accounts.tokens import BEARER, REFRESH, InvalidToken, TokenClaims, strip_bearer
from api import outbox
from api.deps import ResourcesDep, SessionDep, TemporalDep
from api.errors import BadRequest, Conflict, Forbidden, PayloadTooLarge
from api.images import sniff_image_type
from api.params import ParamsDep
from api.rate_limits import limit_sign_in
from api.request_context import bind_user, bind_workflow
from api.resources import Resources, ServiceUnavailable
from api.revocations import publish_revocations
from api.security import CurrentUser
from storage import devices, logins, sign_in_requests, users
from storage.models import Revocation
from storage.outbox import QueuedStart
from temporal import search_attributes as sa
from temporal.accounts import PROVIDERS, ResignInput, SignInInput, SignInResult
from temporal.ids import sign_in_workflow_id
from temporal.task_queues import SIGN_IN, named
from workflows.sign_in import SignInWorkflow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/auth-service", tags=["auth"])

MAX_INTRODUCTION = 255
MAX_PROFILE_IMAGE_BYTES = 5 * 1024 * 1024


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


@router.post("/getAuthorizeCode", dependencies=[Depends(limit_sign_in)])
def get_authorize_code(params: ParamsDep, session: SessionDep, res: ResourcesDep) -> dict[str, str]:
    """Start of the PKCE-like sign-in: store the challenge under a new single-use code."""
    challenge = params.required_text("codeChallenge", max_length=256)
    code = logins.create_authorize_code(session, challenge, res.settings.authorize_code_ttl_seconds)
    session.commit()
    return {"authorizeCode": code}


_REFUSED_CODE = {
    logins.Redemption.UNKNOWN: "this authorize code is unknown",
    logins.Redemption.EXPIRED: "this authorize code has expired",
    logins.Redemption.USED: "this authorize code was already used",
    logins.Redemption.MISMATCH: "the code verifier does not match this authorize code",
}


def _redeem_code(res: Resources, code: str, verifier: str) -> None:
    """Consume ``code`` for ``verifier`` in one short transaction, or ``Forbidden`` saying why."""
    with res.sessions.begin() as session:
        outcome = logins.redeem_authorize_code(session, code, lambda ch: challenge_matches(ch, verifier))
    if outcome is not logins.Redemption.REDEEMED:
        raise Forbidden(_REFUSED_CODE[outcome])


@router.post("/signIn", dependencies=[Depends(limit_sign_in)])
async def sign_in(params: ParamsDep, res: ResourcesDep, temporal: TemporalDep) -> Response:
    """Check the input, redeem the authorize code with its verifier, then run ``SignInWorkflow`` and
    answer with tokens in headers. Nothing is written for a refused request, and no workflow starts."""
    provider = params.required_text("provider", max_length=16)
    if provider not in PROVIDERS:
        raise Forbidden(f"unknown provider {provider!r}")
    try:
        email = validated_email(params.required_text("email", max_length=MAX_EMAIL_LENGTH))
    except InvalidEmail as exc:
        raise BadRequest(str(exc)) from None
    provider_id = params.required_text("providerId", max_length=255)
    verifier = params.required_text("codeVerifier", max_length=256)
    code = params.required_text("authorizeCode", max_length=64)
    authorization_code = params.text("authorizationCode", required=False, max_length=8192) or ""
    device_token = params.required_text("deviceToken", max_length=4096)
    if provider == "apple" and not authorization_code:
        raise BadRequest("authorizationCode is required for Apple sign-in")
    await run_in_threadpool(_redeem_code, res, code, verifier)
    request_id = await run_in_threadpool(
        _store_request, res, email, provider, provider_id, device_token, authorization_code
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
    response = JSONResponse({"nickname": visible_nickname(result.nickname)})
    return token_headers(response, access, refresh, account_email)


def _store_request(
    res: Resources, email: str, provider: str, provider_id: str, device_token: str, apple_code: str
) -> str:
    """Store the validated sign-in for ``SignInWorkflow`` to read by id (``storage.sign_in_requests``)."""
    with res.sessions.begin() as session:
        return sign_in_requests.create(
            session,
            email=email,
            provider=provider,
            provider_id=provider_id,
            device_token=device_token,
            apple_authorization_code=apple_code,
        )


def _finish_request(res: Resources, request_id: str) -> str | None:
    """Delete the answered request; the account e-mail of the login it opened (``None`` when none)."""
    with res.sessions.begin() as session:
        row = sign_in_requests.get(session, request_id)
        user = users.by_id(session, row.user_id) if row is not None and row.user_id is not None else None
        sign_in_requests.remove(session, request_id)
        return user.account_email if user is not None else None


@router.api_route("/reIssueToken", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def reissue_token(request: Request, res: ResourcesDep) -> Response:
    """Rotate the refresh token. The current one rotates; the one just rotated, within the grace window,
    gets the current pair (the client's parallel re-issues); any other is reuse and revokes the login."""
    try:
        claims = res.tokens.verify(strip_bearer(request.headers.get("authorization-refresh")), REFRESH)
    except InvalidToken as exc:
        raise Forbidden(f"invalid refresh token: {exc}") from None
    if not same_account(request.headers.get("email", ""), claims.account_email):
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
async def sign_out(user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Revoke this login and forget its device token."""

    def revoke() -> Revocation | None:  # in the threadpool: a lock wait must not stall the event loop
        with res.sessions.begin() as session:
            revocation = logins.revoke_session(session, user.session_id)
            devices.remove_session_devices(session, user.session_id)
        return revocation

    revocation = await run_in_threadpool(revoke)
    if revocation is not None:
        await publish_revocations(res, user.id, [revocation])
    return {"email": user.account_email, "success": True}


@router.post("/resign")
async def resign(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Revoke every login at once, then run ``ResignWorkflow`` to remove the user's data everywhere.

    The start is queued with the revocation (``api.outbox``): once the logins are revoked the resign
    is certain to run, even when Temporal is down right now (the answer is 200 either way).
    """
    email = params.text("email", required=False, max_length=320) or user.account_email
    if not same_account(email, user.account_email):
        raise Forbidden("email must be the caller's own account")

    def revoke_all() -> tuple[list[Revocation], QueuedStart]:  # in the threadpool (row lock)
        with res.sessions.begin() as session:
            row = users.by_id_locked(session, user.id)
            if row is None:
                raise Forbidden("the account no longer exists")
            req = ResignInput(user_id=row.id, provider=row.provider)
            revoked = logins.revoke_user_sessions(session, user.id)
            return revoked, outbox.queue_resign(session, req)

    revoked, queued = await run_in_threadpool(revoke_all)
    await publish_revocations(res, user.id, revoked)
    bind_workflow(queued.workflow_id)
    await outbox.start_now(res, queued)
    return {"email": email, "success": True}


@router.get("/checkDuplicateNickname")
def check_duplicate_nickname(params: ParamsDep, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Whether another user has this nickname (never revealing whose)."""
    owner = users.by_nickname(session, params.nickname("nickname"))
    return {"email": None, "isPresent": owner is not None and owner.id != user.id}


@router.post("/setProfile")
async def set_profile(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Set the caller's nickname, introduction and profile picture (the caller only).

    A rename is the users row alone: everything else refers to the user id (direct messages too, shown
    with the current nickname), so it starts no workflow and the old nickname is free at once.
    """
    email = params.required_text("email", max_length=320)
    if not same_account(email, user.account_email):
        raise Forbidden("email must be the caller's own account")
    nickname = params.nickname("nickname")
    introduction = params.text("introduction", required=False)
    if introduction is not None and len(introduction) > MAX_INTRODUCTION:
        raise BadRequest(f"introduction must be at most {MAX_INTRODUCTION} characters")
    image: bytes | None = None
    image_type: str | None = None
    for upload in params.files("profileImg")[:1]:
        image = await upload.read(MAX_PROFILE_IMAGE_BYTES + 1)
        if len(image) > MAX_PROFILE_IMAGE_BYTES:
            raise PayloadTooLarge(f"profileImg must be at most {MAX_PROFILE_IMAGE_BYTES} bytes")
        image_type = sniff_image_type(image)
        if image_type is None:
            raise BadRequest("profileImg must be a JPEG, PNG or HEIC image")

    def update() -> None:  # in the threadpool: a lock wait must not stall the event loop
        with res.sessions.begin() as session:
            owner = users.by_nickname(session, nickname)
            if owner is not None and owner.id != user.id:
                raise Conflict(f"nickname {nickname!r} is taken")
            row = users.by_id_locked(session, user.id)
            if row is None:
                raise Forbidden("the account no longer exists")
            row.nickname = nickname
            if introduction is not None:
                row.introduction = introduction.rstrip()
            if image is not None:
                row.profile_image, row.profile_image_type = image, image_type
            try:
                session.flush()
            except IntegrityError:  # a concurrent claim of the same nickname
                raise Conflict(f"nickname {nickname!r} is taken") from None

    await run_in_threadpool(update)
    return {"email": user.account_email, "success": True}


@router.post("/findProfileImg")
def find_profile_img(params: ParamsDep, _user: CurrentUser, session: SessionDep) -> dict[str, str]:
    """A user's profile picture as base64 (``""`` when none or unknown user)."""
    nickname = params.nickname("nickname")
    owner = users.by_nickname(session, nickname)
    if owner is None:
        return {"nickname": "", "profileImg": ""}
    image = owner.profile_image or b""
    return {"nickname": nickname, "profileImg": base64.b64encode(image).decode()}


@router.post("/findIntroduction")
def find_introduction(params: ParamsDep, _user: CurrentUser, session: SessionDep) -> dict[str, str]:
    """A user's introduction (``""`` when none or unknown user)."""
    owner = users.by_nickname(session, params.nickname("nickname"))
    return {"introduction": owner.introduction if owner is not None else ""}


def _change_block(
    params: ParamsDep, user: CurrentUser, session: SessionDep, change: Callable[[Session, int, int], None]
) -> dict[str, bool]:
    """Apply ``change`` (block or unblock) from the caller to ``dstNickname``; the caller must be ``srcNickname``."""
    src = params.nickname("srcNickname")
    me = users.by_id(session, user.id)
    if me is None or src != me.nickname:
        raise Forbidden("srcNickname must be the caller's own nickname")
    target = users.by_nickname(session, params.nickname("dstNickname"))
    if target is None or target.id == user.id:
        return {"success": False}
    change(session, user.id, target.id)
    session.commit()
    return {"success": True}


@router.post("/block")
def block(params: ParamsDep, user: CurrentUser, session: SessionDep) -> dict[str, bool]:
    """Hide ``dstNickname``'s feeds from the caller (``success: false`` for an unknown user or oneself)."""
    return _change_block(params, user, session, users.block)


@router.post("/unblock")
def unblock(params: ParamsDep, user: CurrentUser, session: SessionDep) -> dict[str, bool]:
    """Undo a block (``success: false`` for an unknown user)."""
    return _change_block(params, user, session, users.unblock)
