"""Account activities: authorize codes, the Apple code exchange, and opening a login. Each is idempotent."""

from __future__ import annotations

import base64
import binascii

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from accounts.identities import bound_provider_id
from accounts.pkce import challenge_matches
from activities.apple import AppleClient, AppleKeys, AppleRejected, AppleUnavailable
from activities.deps import ActivityDeps
from storage import devices, logins, users
from temporal.accounts import (
    AppleExchangeInput,
    AppleIdentity,
    ConsumeCodeInput,
    OpenLoginInput,
    OpenLoginResult,
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
        forged or foreign id_token are permanent, 5xx/network are retried."""
        try:
            code = base64.b64decode(req.authorization_code_b64, validate=True).decode()
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
        try:
            tokens = AppleClient(self._deps.settings, self._http, self._apple_keys).exchange_code(code)
        except AppleRejected as exc:
            raise ApplicationError(str(exc), type="AppleRejected", non_retryable=True) from exc
        except AppleUnavailable as exc:
            raise ApplicationError(str(exc), type="AppleUnavailable") from exc
        return AppleIdentity(sub=tokens.sub, email=tokens.email, refresh_token=tokens.refresh_token)

    @activity.defn(name="open_login")
    def open_login(self, req: OpenLoginInput) -> OpenLoginResult:
        """Upsert the account, open the login ``req.session_id`` and register its device token, or
        ``provider-mismatch`` (nothing written) when the account is bound to another identity."""
        try:
            with self._deps.sessions.begin() as session:
                user = users.upsert_account(
                    session,
                    req.account_email,
                    req.provider,
                    bound_provider_id(req.provider_id),
                    req.apple_refresh_token,
                )
                logins.open_session(session, user.id, req.refresh_ttl_seconds, req.session_id)
                registered = devices.register_device(session, user.id, req.device_token, req.session_id)
                return OpenLoginResult(
                    user_id=user.id,
                    nickname=user.nickname,
                    session_id=req.session_id,
                    device_registered=registered,
                )
        except users.ProviderMismatch:
            activity.logger.warning(
                "sign-in refused: the account is bound to another %s identity", req.provider
            )
            return OpenLoginResult(status="provider-mismatch")
