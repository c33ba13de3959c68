"""Account activities: authorize codes, the Apple code exchange, and opening a login. Each is idempotent.

Sign-ins of this version name a stored request (``storage.sign_in_requests``): the exchange reads the
Apple code from it and writes the refresh token back, opening the login reads the rest, so neither the
codes, the token, the e-mail nor the device token is an activity's input or result.
"""

from __future__ import annotations

import base64
import binascii

import httpx
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts.emails import same_account
from accounts.identities import bound_provider_id
from accounts.pkce import challenge_matches
from activities.apple import AppleClient, AppleKeys, AppleRejected, AppleTokens, AppleUnavailable, Deadline
from activities.deps import ActivityDeps
from storage import devices, logins, sign_in_requests, users
from storage.models import SignInRequest
from temporal.accounts import (
    AppleCheck,
    AppleExchangeInput,
    AppleIdentity,
    ConsumeCodeInput,
    OpenLoginInput,
    OpenLoginResult,
    OpenRequestedLogin,
)

#: The stored sign-in request is gone (answered, or expired): nothing to do, not worth retrying.
REQUEST_GONE = "SignInRequestGone"


#: A retry of the Apple check was refused ``invalid_grant``: the code was spent by an earlier attempt of
#: the same check (it timed out after Apple answered, or failed after the exchange), not the user's
#: fault. Not worth retrying either (the code is gone): the sign-in answers "unavailable, try again".
APPLE_CODE_SPENT = "AppleCodeSpentByEarlierAttempt"
#: How long the Apple calls of one attempt (key set, code exchange) may take in all: well below the
#: sign-in workflow's 10 s start_to_close, so a slow Apple fails the attempt (retried) before Temporal
#: times it out, and the attempt still has time to write the outcome to the database.
APPLE_CALLS_SECONDS = 7.0


def _gone() -> ApplicationError:
    return ApplicationError(
        "the sign-in request is gone (answered or expired)", type=REQUEST_GONE, non_retryable=True
    )


class AccountActivities:
    """Activities of the sign-in flow, over the worker's database and an HTTP client for Apple."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps
        self._http = httpx.Client(timeout=10)
        self._apple_keys = AppleKeys(deps.settings, self._http)

    @activity.defn(name="consume_authorize_code")
    def consume_authorize_code(self, req: ConsumeCodeInput) -> bool:
        """True when the code exists, has not expired and the verifier matches its challenge.

        Only sign-ins started with the code in their input run this (the API now redeems codes itself).
        """
        with self._deps.sessions.begin() as session:
            challenge = logins.consume_authorize_code(session, req.authorize_code)
        return challenge is not None and challenge_matches(challenge, req.code_verifier)

    @activity.defn(name="exchange_apple_code")
    def exchange_apple_code(self, req: AppleExchangeInput) -> AppleIdentity:
        """Exchange the client's Apple authorization code for Apple's verified identity; 4xx and a
        forged or foreign id_token are permanent, 5xx/network are retried. (Sign-ins started with the
        code in their input; ``check_apple_code`` now.)"""
        tokens = self._exchange(req.authorization_code_b64)
        return AppleIdentity(sub=tokens.sub, email=tokens.email, refresh_token=tokens.refresh_token)

    @activity.defn(name="check_apple_code")
    def check_apple_code(self, request_id: str) -> AppleCheck:
        """Exchange the stored request's Apple authorization code, keep the refresh token in the request
        (in place of the spent code) and say whether Apple's identity is the one the client named (its
        ``sub`` and, when the id_token has one, its e-mail). A retry after the exchange answers from the
        request: the code is single-use (a retry whose attempt before spent it but wrote nothing fails
        ``APPLE_CODE_SPENT``)."""
        with self._deps.sessions() as session:
            row = sign_in_requests.get(session, request_id)
            if row is None:
                raise _gone()
            if row.apple_sub_matches is not None:
                return _apple_check(row)
            code_b64 = row.apple_authorization_code or ""
            provider_id, email = row.provider_id, row.email
        tokens = self._exchange(code_b64)
        with self._deps.sessions.begin() as session:
            row = sign_in_requests.get(session, request_id, lock=True)
            if row is None:
                raise _gone()
            row.apple_sub_matches = tokens.sub == provider_id
            # Required, not only compared: an id_token without one (authorised without the e-mail scope,
            # which the app always asks for) would let its holder claim any address for a new account,
            # squatting the real owner's sign-in.
            row.apple_email_matches = bool(tokens.email) and same_account(tokens.email, email)
            matched = row.apple_sub_matches and row.apple_email_matches
            row.apple_refresh_token = tokens.refresh_token if matched else None
            row.apple_authorization_code = None
            return _apple_check(row)

    def _exchange(self, authorization_code_b64: str) -> AppleTokens:
        try:
            code = base64.b64decode(authorization_code_b64, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ApplicationError(
                "authorizationCode is not base64 of a UTF-8 Apple code",
                type="InvalidAuthorizationCode",
                non_retryable=True,
            ) from None
        if not code:
            raise ApplicationError(
                "authorizationCode is empty", type="InvalidAuthorizationCode", non_retryable=True
            )
        deadline = Deadline(APPLE_CALLS_SECONDS)
        try:
            return AppleClient(self._deps.settings, self._http, self._apple_keys, deadline).exchange_code(
                code
            )
        except AppleRejected as exc:
            if exc.error == "invalid_grant" and activity.info().attempt > 1:
                # Apple codes are single-use and an earlier attempt may have spent this one: the user
                # did nothing wrong, and must only start over with a new code.
                raise ApplicationError(
                    f"{exc} on attempt {activity.info().attempt}: spent by an earlier attempt",
                    type=APPLE_CODE_SPENT,
                    non_retryable=True,
                ) from None
            raise ApplicationError(str(exc), type="AppleRejected", non_retryable=True) from None
        except AppleUnavailable as exc:
            raise ApplicationError(str(exc), type="AppleUnavailable") from None

    @activity.defn(name="open_login")
    def open_login(self, req: OpenLoginInput) -> OpenLoginResult:
        """Upsert the account, open the login ``req.session_id`` and register its device token, or
        ``provider-mismatch`` (nothing written) when the account is bound to another identity. (Sign-ins
        started with the request in their input; ``open_requested_login`` now.)"""
        try:
            with self._deps.sessions.begin() as session:
                return _open(
                    session,
                    req.account_email,
                    req.provider,
                    req.provider_id,
                    req.apple_refresh_token,
                    req.device_token,
                    req.session_id,
                    req.refresh_ttl_seconds,
                )
        except users.ProviderMismatch:
            return _mismatch(req.provider)

    @activity.defn(name="open_requested_login")
    def open_requested_login(self, req: OpenRequestedLogin) -> OpenLoginResult:
        """``open_login`` for the stored request ``req.request_id``: the account, provider identity,
        device token and Apple refresh token come from the request, whose device token and refresh
        token are cleared in the same transaction (they now live in their own rows). A retry after the
        commit answers from the request."""
        try:
            with self._deps.sessions.begin() as session:
                row = sign_in_requests.get(session, req.request_id, lock=True)
                if row is None:
                    raise _gone()
                if row.user_id is not None and row.session_id is not None:
                    user = users.by_id(session, row.user_id)
                    return OpenLoginResult(
                        user_id=row.user_id,
                        nickname=user.nickname if user is not None else None,
                        session_id=row.session_id,
                    )
                result = _open(
                    session,
                    f"{row.email}+{row.provider}",
                    row.provider,
                    row.provider_id,
                    row.apple_refresh_token,
                    row.device_token or "",
                    req.session_id,
                    req.refresh_ttl_seconds,
                )
                row.user_id, row.session_id = result.user_id, result.session_id
                row.device_token = row.apple_refresh_token = None
                return result
        except users.ProviderMismatch:
            with self._deps.sessions() as session:
                row = sign_in_requests.get(session, req.request_id)
                provider = row.provider if row is not None else "provider"
            return _mismatch(provider)


def _apple_check(row: SignInRequest) -> AppleCheck:
    return AppleCheck(sub_matches=bool(row.apple_sub_matches), email_matches=bool(row.apple_email_matches))


def _open(
    session: Session,
    account_email: str,
    provider: str,
    provider_id: str,
    apple_refresh_token: str | None,
    device_token: str,
    session_id: str,
    refresh_ttl_seconds: int,
) -> OpenLoginResult:
    """Upsert the account, open the login and register the device, in the caller's transaction;
    ``users.ProviderMismatch`` when the account is bound to another identity."""
    user = users.upsert_account(
        session, account_email, provider, bound_provider_id(provider_id), apple_refresh_token
    )
    logins.open_session(session, user.id, refresh_ttl_seconds, session_id)
    registered = devices.register_device(session, user.id, device_token, session_id)
    return OpenLoginResult(
        user_id=user.id, nickname=user.nickname, session_id=session_id, device_registered=registered
    )


def _mismatch(provider: str) -> OpenLoginResult:
    activity.logger.warning("sign-in refused: the account is bound to another %s identity", provider)
    return OpenLoginResult(status="provider-mismatch")
