"""Inputs and results of the account workflows and activities (pydantic, so fields can grow with defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

PROVIDERS = ("apple", "google", "kakao")


class SignInInput(BaseModel):
    """A sign-in the API validated, redeemed the authorize code of and stored (``storage.sign_in_requests``):
    only the stored request's random id and non-secret options, so no e-mail, device token or Apple
    code enters the history; the activities read the rest from the row."""

    request_id: str = ""
    provider: Literal["apple", "google", "kakao"]
    refresh_ttl_seconds: int = 14 * 24 * 3600
    #: Only in starts from before sign-in requests were stored (recorded histories, a rollout in
    #: progress): the request itself. The API leaves them all empty now.
    email: str = ""
    provider_id: str = ""
    code_verifier: str = ""
    authorize_code: str = ""
    authorization_code: str = ""
    device_token: str = ""

    @property
    def account_email(self) -> str:
        """The account id ``<email>+<provider>`` of a start that carried the e-mail (legacy)."""
        return f"{self.email}+{self.provider}"


class SignInResult(BaseModel):
    """A business outcome: ``ok`` with the login, or ``forbidden``/``unavailable`` with a reason."""

    status: Literal["ok", "forbidden", "unavailable"]
    reason: str = ""
    user_id: int = 0
    #: Only in results of runs from before sign-in requests were stored: the API reads the account
    #: e-mail from the database by ``user_id``.
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
    """Who Apple says signed in, and the refresh token to revoke at resign (results of runs from before
    sign-in requests were stored; ``AppleCheck`` now)."""

    sub: str
    email: str
    refresh_token: str


class AppleCheck(BaseModel):
    """What the Apple exchange of a stored sign-in request found; the refresh token stayed in the row."""

    sub_matches: bool
    email_matches: bool


class OpenLoginInput(BaseModel):
    """Upsert the account, open a login session and register the device, in one transaction."""

    account_email: str
    provider: str
    provider_id: str
    apple_refresh_token: str | None = None
    device_token: str = ""
    session_id: str
    refresh_ttl_seconds: int


class OpenRequestedLogin(BaseModel):
    """Open the login of a stored sign-in request (``OpenLoginInput`` with the request read by id)."""

    request_id: str
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
    """Which account leaves: the steps read everything else (the Apple refresh token too) by user id."""

    user_id: int
    provider: str
    #: Only in resigns queued or started before the steps read the account by id (recorded histories,
    #: outbox rows of an older API); the API leaves them empty now.
    account_email: str = ""
    nickname: str | None = None
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
