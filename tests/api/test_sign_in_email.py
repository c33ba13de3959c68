"""The sign-in e-mail (issue 12 point 6): validated before anything is written (400 with a reason), and one
canonical form in the ``email`` header, the JWT claim, the users row and every comparison."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest
from sqlalchemy import select
from temporalio.client import Client

from accounts.tokens import ACCESS, BEARER, TokenIssuer
from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from storage.models import User
from tests.api.sign_in_helpers import sign_in_runs
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient, code_verifier


def _rows_like(deps: ActivityDeps, prefix: str) -> list[str]:
    with deps.sessions() as s:
        return list(s.scalars(select(User.account_email).where(User.account_email.like(f"{prefix}%"))))


async def test_crlf_email_is_400_over_real_http_and_creates_no_row(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    # Before: the account row was written, then h11 refused the `email` header and dropped the connection.
    prefix = f"crlf{uuid.uuid4().hex[:8]}"
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    resp = app.present_code(code, verifier, f"{prefix}@gmail.com\r\nX-Injected: 1")
    assert resp.status_code == 400
    assert resp.json()["message"] == "email must not contain whitespace or control characters (found U+000D)"
    assert "X-Injected" not in resp.headers
    assert _rows_like(activity_deps, prefix) == []
    assert await sign_in_runs(temporal_client, code) == []
    # Nothing changed: the code is still good for a proper sign-in.
    assert app.present_code(code, verifier, f"{prefix}@gmail.com").status_code == 200
    assert _rows_like(activity_deps, prefix) == [f"{prefix}@gmail.com+kakao"]


@pytest.mark.parametrize(
    ("local", "domain", "reason"),
    [
        ("lf", "gmail.com\n", "control characters"),
        ("sp ace", "gmail.com", "whitespace"),
        ("zw\u200bsp", "gmail.com", "U+200B"),
        ("bidi\u202e", "gmail.com", "U+202E"),
        ("long", "x" * 63 + "." + "y" * 63 + "." + "z" * 63 + "." + "w" * 60 + ".com", "at most 254"),
        ("nodot", "localhost", "bad domain"),
    ],
)
def test_a_bad_email_is_400_with_a_reason_and_writes_nothing(
    local: str, domain: str, reason: str, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    prefix = f"bad{uuid.uuid4().hex[:8]}{local}"
    resp = IOSClient(http).sign_in(f"{prefix}@{domain}")
    assert resp.status_code == 400 and reason in resp.json()["message"], resp.text
    assert _rows_like(activity_deps, prefix) == []


def test_the_clients_unknown_email_fallback_is_400(http: httpx.Client) -> None:
    resp = IOSClient(http).sign_in("unknownEmail")
    assert resp.status_code == 400 and "e-mail address" in resp.json()["message"]


def test_the_email_is_canonical_in_header_token_and_row(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    tag = uuid.uuid4().hex[:8]
    phone = IOSClient(http)
    resp = phone.sign_in(f"Mixed.{tag}@Example.COM", "google", f"g-{tag}")
    assert resp.status_code == 200, resp.text
    canonical = f"mixed.{tag}@example.com+google"
    assert resp.headers["email"] == canonical  # still <email>+<provider>: the client splits on '+'
    claims = jwt.decode(
        resp.headers["Authorization"].removeprefix(BEARER), options={"verify_signature": False}
    )
    assert claims["email"] == canonical
    assert _rows_like(activity_deps, f"mixed.{tag}") == [canonical]
    # Another spelling of the same address is the same account.
    tablet = IOSClient(http)
    assert tablet.sign_in(f"MIXED.{tag}@example.com", "google", f"g-{tag}").status_code == 200
    assert tablet.email == canonical
    assert _rows_like(activity_deps, f"mixed.{tag}") == [canonical]
    check = tablet.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"})
    assert check.status_code == 200


@pytest.fixture(scope="module")
def database_path_url(settings: Settings, api_url: str) -> Iterator[str]:
    """An API replica that asks the database on every request (revocation view off)."""
    with serve_in_thread(
        create_app(settings.model_copy(update={"revocation_view_enabled": False})), http="h11"
    ) as url:
        yield url


@pytest.mark.parametrize("path", ["view", "database"])
def test_a_token_holding_the_email_in_its_old_case_still_authenticates(
    path: str, http: httpx.Client, database_path_url: str, settings: Settings
) -> None:
    """A client signed in before e-mails were canonical keeps its mixed-case token and ``email``; the
    revocation view and the database path both accept it, and both still refuse another account."""
    tag = uuid.uuid4().hex[:8]
    phone = IOSClient(http)
    assert phone.sign_in(f"old.{tag}@example.com").status_code == 200
    issuer = TokenIssuer(settings)
    claims = issuer.verify(phone.access.removeprefix(BEARER), ACCESS)
    old_email = f"Old.{tag}@Example.com+kakao"
    access, _ = issuer.pair(old_email, claims.user_id, claims.session_id, 0)
    base = http if path == "view" else httpx.Client(base_url=database_path_url, timeout=30)
    old = IOSClient(base, access=f"{BEARER}{access}", email=old_email)
    assert old.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 200
    other = IOSClient(base, access=f"{BEARER}{access}", email=f"someone.{tag}@example.com+kakao")
    assert other.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 403


def test_a_login_holding_its_email_in_the_old_case_re_issues_and_acts_as_itself(
    http: httpx.Client, settings: Settings
) -> None:
    """Re-issue, setProfile and resign compare e-mails canonically as authentication does; the re-issued
    pair carries the canonical form."""
    tag = uuid.uuid4().hex[:8]
    phone = IOSClient(http)
    assert phone.sign_in(f"case.{tag}@example.com").status_code == 200
    issuer = TokenIssuer(settings)
    claims = issuer.verify(phone.refresh.removeprefix(BEARER), "RefreshToken")
    old_email = f"Case.{tag}@Example.com+kakao"
    access, refresh = issuer.pair(old_email, claims.user_id, claims.session_id, claims.generation)
    old = IOSClient(http, access=f"{BEARER}{access}", refresh=f"{BEARER}{refresh}", email=old_email)
    assert old.reissue().status_code == 200
    renewed = issuer.verify(old.access.removeprefix(BEARER), ACCESS)
    assert renewed.account_email == f"case.{tag}@example.com+kakao"
    form = [("email", old_email), ("nickname", f"c{tag[:6]}"), ("introduction", "hi")]
    assert old.post_multipart("/auth-service/setProfile", form).json()["success"] is True
    assert old.post_multipart("/auth-service/resign", [("email", old_email)]).json()["success"] is True
