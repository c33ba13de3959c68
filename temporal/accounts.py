"""Inputs and results of the account workflows and activities (pydantic, so fields can grow with defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

PROVIDERS = ("apple", "google", "kakao")


class SignInInput(BaseModel):
    """What the client sent to ``/auth-service/signIn``, after the API validated it and redeemed the
    authorize code; ``email`` is canonical (``accounts.emails``)."""

    email: str
    provider: Literal["apple", "google", "kakao"]
    provider_id: str
    #: Only in starts from before the API redeemed codes itself (recorded histories, a rollout in
    #: progress); the API leaves both empty, so neither the code nor its verifier reaches the history.
    code_verifier: str = ""
    authorize_code: str = ""
    authorization_code: str = ""
    device_token: str = ""
    refresh_ttl_seconds: int = 14 * 24 * 3600

    @property
    def account_email(self) -> str:
        """The account id ``<email>+<provider>`` the client keys everything on."""
        return f"{self.email}+{self.provider}"


class SignInResult(BaseModel):
    """A business outcome: ``ok`` with the login, or ``forbidden``/``unavailable`` with a reason."""

    status: Literal["ok", "forbidden", "unavailable"]
    reason: str = ""
    user_id: int = 0
    account_email: str = ""
    nickname: str | None = None
    session_id: str = ""


class ConsumeCodeInput(BaseModel):
    """Consume an authorize code and check the verifier (sign-ins started without a redeemed code)."""

    authorize_code: str
    code_verifier: str


class AppleExchangeInput(BaseModel):
    """The base64 Apple authorization code the client sent."""

    authorization_code_b64: str


class AppleIdentity(BaseModel):
    """Who Apple says signed in, and the refresh token to revoke at resign."""

    sub: str
    email: str
    refresh_token: str


class OpenLoginInput(BaseModel):
    """Upsert the account, open a login session and register the device, in one transaction."""

    account_email: str
    provider: str
    provider_id: str
    apple_refresh_token: str | None = None
    device_token: str = ""
    session_id: str
    refresh_ttl_seconds: int


class OpenLoginResult(BaseModel):
    """The account and login that sign-in produced, or ``provider-mismatch``: the account is bound to
    another provider identity, and nothing was written."""

    status: Literal["ok", "provider-mismatch"] = "ok"
    user_id: int = 0
    nickname: str | None = None
    session_id: str = ""
    device_registered: bool = False


class ResignInput(BaseModel):
    """Everything the resign steps need, captured when the user asked to leave."""

    user_id: int
    account_email: str
    nickname: str | None = None
    provider: str
    apple_refresh_token: str | None = None


class ResignResult(BaseModel):
    """What was removed, and whether Apple accepted the token revocation."""

    feeds_deleted: int = 0
    messages_deleted: int = 0
    devices_removed: int = 0
    pushes_cancelled: int = 0
    apple: str = "not-apple"  # not-apple | revoked | refused


class NicknameChange(BaseModel):
    """One rename of a user, already applied to the users row, to bring every other store up to date."""

    user_id: int
    old: str
    new: str
    #: The user's rename number (``storage.nickname_changes``); a change seen again is skipped. ``None``
    #: in renames queued before changes were numbered.
    change_id: int | None = None
