"""Accounts are bound to the provider identity (issue 12 point 2): the Apple takeover and the Kakao/Google
"same e-mail, other providerId" sign-ins answer 403 and leave the victim's account as it was; the
client's placeholders bind nothing; the Apple id_token must be Apple's and for the submitted e-mail."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client

from activities.deps import ActivityDeps
from emulators.control import AppleEmulator
from storage.models import LoginSession, User
from temporal.ids import sign_in_workflow_id
from tests.fixtures.ios_client import IOSClient, code_verifier


@dataclass(frozen=True)
class AccountState:
    """What a takeover must not change."""

    user_id: int
    provider_id: str | None
    apple_refresh_token: str | None
    logins: int


def _state(deps: ActivityDeps, account_email: str) -> AccountState | None:
    with deps.sessions() as s:
        user = s.scalars(select(User).where(User.account_email == account_email)).one_or_none()
        if user is None:
            return None
        logins = s.scalar(
            select(func.count()).select_from(LoginSession).where(LoginSession.user_id == user.id)
        )
        return AccountState(user.id, user.provider_id, user.apple_refresh_token, int(logins or 0))


def _apple_code(apple: AppleEmulator, sub: str, email: str = "", forged: bool = False) -> str:
    """A fresh Apple authorization code for ``sub`` as the client sends it (base64)."""
    code = f"apple-{uuid.uuid4().hex}"
    apple.register_code(code, sub=sub, email=email, forged=forged)
    return base64.b64encode(code.encode()).decode()


def _sign_in_apple(http: httpx.Client, email: str, sub: str, apple_code: str) -> tuple[httpx.Response, str]:
    """signIn with Apple; the response and the authorize code it used."""
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    return app.present_code(code, verifier, email, "apple", sub, apple_code), code


async def _outcome(client: Client, code: str) -> str | None:
    desc = await client.get_workflow_handle(sign_in_workflow_id(code)).describe()
    return next((str(p.value) for p in desc.typed_search_attributes if p.key.name == "SosoOutcome"), None)


def _relay() -> str:
    return f"v{uuid.uuid4().hex[:10]}@privaterelay.appleid.com"


async def test_apple_takeover_with_own_code_and_victims_email_is_403(
    http: httpx.Client, apple_emulator: AppleEmulator, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    victim_email, victim_sub = _relay(), f"001234.{uuid.uuid4().hex}.0815"
    ok, _ = _sign_in_apple(
        http, victim_email, victim_sub, _apple_code(apple_emulator, victim_sub, victim_email)
    )
    assert ok.status_code == 200, ok.text
    before = _state(activity_deps, f"{victim_email}+apple")
    assert before is not None and before.provider_id == victim_sub and before.apple_refresh_token

    # The attacker's own valid Apple code and providerId with an id_token that names the victim's
    # e-mail (as if Apple had verified it): only the binding stands between them and the account.
    attacker_sub = f"001234.{uuid.uuid4().hex}.0815"
    refused, code = _sign_in_apple(
        http, victim_email, attacker_sub, _apple_code(apple_emulator, attacker_sub, victim_email)
    )
    assert refused.status_code == 403
    assert refused.json()["message"] == "this account is bound to another apple identity"
    assert "Authorization" not in refused.headers
    assert _state(activity_deps, f"{victim_email}+apple") == before
    assert await _outcome(temporal_client, code) == "provider-mismatch"

    # An id_token without an e-mail (authorised without the e-mail scope) proves none: refused.
    refused, _ = _sign_in_apple(http, victim_email, attacker_sub, _apple_code(apple_emulator, attacker_sub))
    assert refused.status_code == 403
    assert refused.json()["message"] == "the Apple id_token is for another e-mail"
    assert _state(activity_deps, f"{victim_email}+apple") == before

    # The same with an id_token that names the attacker's own e-mail.
    with_email = _apple_code(apple_emulator, attacker_sub, "attacker@icloud.com")
    refused, _ = _sign_in_apple(http, victim_email, attacker_sub, with_email)
    assert refused.status_code == 403
    assert refused.json()["message"] == "the Apple id_token is for another e-mail"
    assert _state(activity_deps, f"{victim_email}+apple") == before


def test_an_apple_id_token_without_an_e_mail_opens_no_new_account(
    http: httpx.Client, apple_emulator: AppleEmulator, activity_deps: ActivityDeps
) -> None:
    """Squatting: a modified app authorised without the e-mail scope must not create the account of an
    address whose owner has not signed up yet (the real app always has the id_token's e-mail)."""
    sub, someone = f"s-{uuid.uuid4().hex}", _relay()
    refused, _ = _sign_in_apple(http, someone, sub, _apple_code(apple_emulator, sub))
    assert refused.status_code == 403 and "another e-mail" in refused.json()["message"]
    assert _state(activity_deps, f"{someone}+apple") is None


def test_apple_id_token_email_must_be_the_submitted_one(
    http: httpx.Client, apple_emulator: AppleEmulator, activity_deps: ActivityDeps
) -> None:
    sub, real, typed = f"s-{uuid.uuid4().hex}", _relay(), _relay()
    refused, _ = _sign_in_apple(http, typed, sub, _apple_code(apple_emulator, sub, real))
    assert refused.status_code == 403 and "another e-mail" in refused.json()["message"]
    assert _state(activity_deps, f"{typed}+apple") is None
    # Compared in canonical form: Apple's capitals do not make it another address.
    ok, _ = _sign_in_apple(http, real, sub, _apple_code(apple_emulator, sub, real.upper()))
    assert ok.status_code == 200, ok.text
    assert ok.headers["email"] == f"{real}+apple"


def test_apple_refresh_token_is_replaced_for_the_same_sub_only(
    http: httpx.Client, apple_emulator: AppleEmulator, activity_deps: ActivityDeps
) -> None:
    sub, email = f"s-{uuid.uuid4().hex}", _relay()
    assert _sign_in_apple(http, email, sub, _apple_code(apple_emulator, sub, email))[0].status_code == 200
    first = _state(activity_deps, f"{email}+apple")
    assert _sign_in_apple(http, email, sub, _apple_code(apple_emulator, sub, email))[0].status_code == 200
    second = _state(activity_deps, f"{email}+apple")
    assert first is not None and second is not None
    assert second.apple_refresh_token and second.apple_refresh_token != first.apple_refresh_token
    assert (second.user_id, second.provider_id, second.logins) == (first.user_id, sub, first.logins + 1)


def test_an_id_token_apple_did_not_sign_is_refused(
    http: httpx.Client, apple_emulator: AppleEmulator, activity_deps: ActivityDeps
) -> None:
    sub, email = f"s-{uuid.uuid4().hex}", _relay()
    refused, _ = _sign_in_apple(http, email, sub, _apple_code(apple_emulator, sub, email, forged=True))
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("Apple refused the sign-in: id_token")
    assert _state(activity_deps, f"{email}+apple") is None


@pytest.mark.parametrize("provider", ["kakao", "google"])
def test_same_email_with_another_provider_id_is_403(
    provider: str, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    email = f"k{uuid.uuid4().hex[:10]}@gmail.com"
    owner = IOSClient(http)
    assert owner.sign_in(email, provider, "1111111111").status_code == 200
    before = _state(activity_deps, f"{email}+{provider}")
    refused = IOSClient(http).sign_in(email, provider, "2222222222")
    assert refused.status_code == 403
    assert refused.json()["message"] == f"this account is bound to another {provider} identity"
    assert _state(activity_deps, f"{email}+{provider}") == before
    assert IOSClient(http).sign_in(email, provider, "1111111111").status_code == 200


@pytest.mark.parametrize(("provider", "placeholder"), [("kakao", "0"), ("google", "unknownId")])
def test_a_placeholder_account_binds_to_the_first_real_id(
    provider: str, placeholder: str, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    email = f"p{uuid.uuid4().hex[:10]}@gmail.com"
    account = f"{email}+{provider}"

    def status(provider_id: str) -> int:
        return IOSClient(http).sign_in(email, provider, provider_id).status_code

    assert status(placeholder) == 200
    created = _state(activity_deps, account)
    assert created is not None and created.provider_id is None  # unbound
    assert status(placeholder) == 200  # nothing to compare yet
    assert status("4242424242") == 200
    bound = _state(activity_deps, account)
    assert bound is not None and (bound.user_id, bound.provider_id) == (created.user_id, "4242424242")
    assert status(placeholder) == 403  # a placeholder never matches a bound id
    assert status("4343434343") == 403
    assert status("4242424242") == 200
    final = _state(activity_deps, account)
    assert final is not None and final.provider_id == "4242424242"


def test_concurrent_first_sign_ins_bind_exactly_one_identity(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    email = f"r{uuid.uuid4().hex[:10]}@gmail.com"
    apps = [(IOSClient(http), code_verifier()) for _ in range(5)]
    codes = [app.authorize_code(verifier) for app, verifier in apps]

    def present(i: int) -> int:
        app, verifier = apps[i]
        return app.present_code(codes[i], verifier, email, "kakao", f"77{i}").status_code

    with ThreadPoolExecutor(len(apps)) as pool:
        statuses = list(pool.map(present, range(len(apps))))
    assert sorted(statuses) == [200, 403, 403, 403, 403]
    state = _state(activity_deps, f"{email}+kakao")
    assert state is not None and state.provider_id == f"77{statuses.index(200)}" and state.logins == 1
