"""Who is calling: the access token, checked against the ``Email`` header and the login's revocation state.

An invalid, expired, mismatched or revoked token is a 403, the status that triggers the iOS client's
token re-issue.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Security, WebSocket
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Scope

from accounts.emails import same_account
from accounts.tokens import ACCESS, InvalidToken, TokenClaims, strip_bearer
from api.deps import ResourcesDep
from api.errors import Forbidden
from api.request_context import bind_user
from api.resources import Resources
from api.shedding import check_in_thread
from api.uploads import Admission
from storage import logins, users

#: The access token as signIn / reIssueToken answered it in their ``Authorization`` header
#: (``Bearer <jwt>``, sent back exactly as received).
access_token_header = APIKeyHeader(
    name="Authorization",
    scheme_name="accessToken",
    description="The `Authorization` response header of signIn or reIssueToken, as received: `Bearer eyJ…`.",
    auto_error=False,
)
#: The account e-mail as signIn answered it in its ``email`` header (``<email>+<provider>``).
email_header = APIKeyHeader(
    name="Email",
    scheme_name="email",
    description="The `email` response header of signIn: `<email>+<provider>`, e.g. `jin.so@gmail.com+kakao`.",
    auto_error=False,
)
#: The refresh token as signIn / reIssueToken answered it in ``authorization-refresh``.
refresh_token_header = APIKeyHeader(
    name="Authorization-refresh",
    scheme_name="refreshToken",
    description="The `authorization-refresh` response header of signIn or reIssueToken, as received.",
    auto_error=False,
)
AccessTokenHeader = Annotated[str | None, Security(access_token_header)]
EmailHeader = Annotated[str | None, Security(email_header)]
RefreshTokenHeader = Annotated[str | None, Security(refresh_token_header)]


#: The 403 message of a token whose login or account was revoked.
REVOKED_LOGIN = "this login was signed out or revoked"


@dataclass(frozen=True)
class AuthenticatedUser:
    """The caller, as established from the access token."""

    id: int
    account_email: str
    session_id: str
    #: The access token's ``exp`` (epoch seconds): a DM socket opened with it closes then.
    expires_at: int = 0


def header_text(value: str | None) -> str:
    """A header's value as the client sent it: Starlette decodes header bytes as Latin-1, and the
    ``email`` header carries UTF-8 (signIn writes an internationalised address so, and the app sends
    the bytes back as it got them). A value that is not UTF-8 is left as decoded."""
    if not value:
        return ""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def verify_access(res: Resources, authorization: str | None, email: str | None) -> TokenClaims:
    """The access token's claims if the token is valid and its e-mail equals the ``Email`` header."""
    try:
        claims = res.tokens.verify(strip_bearer(authorization), ACCESS)
    except InvalidToken as exc:
        raise Forbidden(f"invalid access token: {exc}") from None
    # Canonically compared: a client may hold the e-mail in the case it was first given (before
    # account e-mails were canonical); tokens minted since carry the canonical form.
    if not same_account(header_text(email), claims.account_email):
        raise Forbidden("the Email header does not match the access token")
    return claims


def load_user(res: Resources, claims: TokenClaims) -> AuthenticatedUser:
    """The user of a verified token, unless its login or account was revoked.

    The replica's revocation view (seeded from the database, fed by Kafka) answers without touching the
    database; while it is not caught up (start-up, broker lost) the database is asked.
    """
    revoked = res.revocations.is_revoked(claims.session_id, claims.user_id)
    if revoked is None:
        revoked = revoked_in_database(res, claims)
    return _admit(claims, revoked)


def revoked_in_database(res: Resources, claims: TokenClaims) -> bool:
    """The database's answer (the truth the revocation view mirrors): the login is revoked, expired or
    gone, or the account is gone or no longer has the token's e-mail."""
    return _revoked_in_database(res, claims.user_id, claims.session_id, claims.account_email)


def _revoked_in_database(res: Resources, user_id: int, session_id: str, account_email: str) -> bool:
    with res.sessions() as session:
        user = users.by_id(session, user_id)
        return (
            not logins.session_is_active(session, session_id)
            or user is None
            or not same_account(user.account_email, account_email)
        )


async def login_revoked(res: Resources, user: AuthenticatedUser) -> bool:
    """Whether the caller's login or account was revoked since it authenticated (a DM socket asks
    before each frame): the revocation view in memory, or the database in the threadpool while the
    view is not caught up."""
    revoked = res.revocations.is_revoked(user.session_id, user.id)
    if revoked is None:
        args = (res, user.id, user.session_id, user.account_email)
        revoked = await run_in_threadpool(_revoked_in_database, *args)
    return revoked


def _admit(claims: TokenClaims, revoked: bool) -> AuthenticatedUser:
    if revoked:
        raise Forbidden(REVOKED_LOGIN)
    bind_user(claims.user_id)  # the request's log line names its caller
    return AuthenticatedUser(claims.user_id, claims.account_email, claims.session_id, claims.expires_at)


async def current_user(
    res: ResourcesDep, authorization: AccessTokenHeader, email: EmailHeader
) -> AuthenticatedUser:
    """FastAPI dependency: the authenticated caller of an HTTP request, from its ``Authorization`` and
    ``Email`` headers (the ``accessToken`` and ``email`` security schemes), on the event loop when the
    revocation view can answer, in the threadpool when the database must."""
    claims = verify_access(res, authorization, email)
    revoked = res.revocations.is_revoked(claims.session_id, claims.user_id)
    if revoked is None:
        revoked = await check_in_thread(revoked_in_database, res, claims)
    return _admit(claims, revoked)


async def token_user_id(res: Resources, authorization: str | None, email: str | None) -> int | None:
    """The user the headers authenticate (as ``current_user`` would admit them), or ``None`` for any
    token that would be refused: for a route where a token is optional and never answered with 403."""
    try:
        claims = verify_access(res, authorization, email)
    except Forbidden:
        return None
    revoked = res.revocations.is_revoked(claims.session_id, claims.user_id)
    if revoked is None:
        revoked = await check_in_thread(revoked_in_database, res, claims)
    return None if revoked else _admit(claims, False).id


def token_paths(routers: Iterable[APIRouter]) -> frozenset[str]:
    """The paths of the routes that admit only a caller with a valid token (``current_user`` among
    their dependencies, however deep)."""

    def calls(dependant: Any) -> Iterator[Any]:
        yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    return frozenset(
        route.path
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and current_user in set(calls(route.dependant))
    )


def takes_token(scope: Scope) -> bool:
    """Whether the request of ``scope`` is for a route that admits only a caller with a valid token
    (``token_paths``; ``api.uploads``: the others take no large body)."""
    return scope.get("path") in getattr(scope["app"].state, "token_paths", frozenset())


def upload_admission(scope: Scope) -> Admission:
    """Whose the request of ``scope`` is, or why ``current_user`` would refuse it (its 403 message), as
    far as the token and the revocation view tell without the database (``api.uploads``: a large body
    is taken in only for a caller the route may admit, and counted against that user's own cap).
    Asked only for routes that take a token."""
    res: Resources | None = getattr(scope["app"].state, "resources", None)
    if res is None:
        return Admission()
    headers = Headers(scope=scope)
    try:
        claims = verify_access(res, headers.get("authorization"), headers.get("email"))
    except Forbidden as refused:
        return Admission(refused=refused.message)
    if res.revocations.is_revoked(claims.session_id, claims.user_id):
        return Admission(refused=REVOKED_LOGIN)
    return Admission(user_id=claims.user_id)


async def authenticate_websocket(websocket: WebSocket) -> AuthenticatedUser:
    """The caller of a WebSocket upgrade, authenticated with the same headers as REST (as
    ``current_user``: the database, when it must be asked, in the threadpool, never on the event loop)."""
    res: Resources = websocket.app.state.resources
    claims = verify_access(res, websocket.headers.get("authorization"), websocket.headers.get("email"))
    revoked = res.revocations.is_revoked(claims.session_id, claims.user_id)
    if revoked is None:
        revoked = await check_in_thread(revoked_in_database, res, claims)
    return _admit(claims, revoked)


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]
