"""Token re-issue, rotation (with the grace window of parallel re-issues), reuse detection, sign-out and
403s, as the iOS client's interceptor sees them."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
from sqlalchemy import select

from activities.deps import ActivityDeps
from config import Settings
from storage.models import LoginSession, Revocation
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.logins import login_id, move_rotation_back, reissue_twice


def _signed_in(http: httpx.Client) -> IOSClient:
    app = IOSClient(http)
    assert app.sign_in(f"t{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    return app


def _authed_call(app: IOSClient) -> int:
    return app.get_query("/auth-service/checkDuplicateNickname", {"nickname": "nobody"}).status_code


def _claims(settings: Settings, token: str) -> dict[str, Any]:
    return jwt.decode(token.removeprefix("Bearer "), settings.jwt_secret, algorithms=["HS512"])


def _login_row(deps: ActivityDeps, app: IOSClient) -> LoginSession:
    with deps.sessions() as session:
        row = session.get(LoginSession, login_id(app))
        assert row is not None
        return row


def test_access_token_claims_keep_the_original_shape(http: httpx.Client, settings: Settings) -> None:
    app = _signed_in(http)
    claims = jwt.decode(app.access.removeprefix("Bearer "), settings.jwt_secret, algorithms=["HS512"])
    assert claims["sub"] == "AccessToken" and claims["email"] == app.email and "exp" in claims
    assert jwt.get_unverified_header(app.access.removeprefix("Bearer ")) == {"alg": "HS512", "typ": "JWT"}


def test_reissue_rotates_and_the_new_tokens_work(http: httpx.Client) -> None:
    app = _signed_in(http)
    old_refresh = app.refresh
    resp = app.reissue()
    assert resp.status_code == 200 and resp.content == b""
    assert app.refresh != old_refresh
    assert _authed_call(app) == 200


def test_parallel_reissues_with_one_refresh_token_all_succeed(
    http: httpx.Client, api_url: str, activity_deps: ActivityDeps, settings: Settings
) -> None:
    # CLIENT_CONTRACT §2.3: one re-issue per parallel 403, every one with the same stored refresh token.
    app = _signed_in(http)
    n = 6
    barrier = threading.Barrier(n)

    def reissue(_: int) -> tuple[int, str, str]:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            copy = IOSClient(client, access=app.access, refresh=app.refresh, email=app.email)
            barrier.wait(timeout=30)
            status = copy.reissue().status_code
            return status, copy.access, copy.refresh

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(reissue, range(n)))
    assert [status for status, _, _ in answers] == [200] * n
    # The login rotated once: every answer is a pair of the one new generation, and each works.
    assert {_claims(settings, refresh)["gen"] for _, _, refresh in answers} == {1}
    row = _login_row(activity_deps, app)
    assert row.generation == 1 and row.revoked_at is None
    for _, access, refresh in answers:
        assert _authed_call(IOSClient(http, access=access, refresh=refresh, email=app.email)) == 200
    # Whichever answer the client stored keeps working: it re-issues again later.
    _, access, refresh = answers[-1]
    stored = IOSClient(http, access=access, refresh=refresh, email=app.email)
    assert stored.reissue().status_code == 200 and _authed_call(stored) == 200
    assert _claims(settings, stored.refresh)["gen"] == 1  # within the window: the current pair again
    move_rotation_back(activity_deps, app, settings.refresh_reuse_grace_seconds + 1)
    assert stored.reissue().status_code == 200 and _claims(settings, stored.refresh)["gen"] == 2


def test_re_issues_answered_one_after_another_never_revoke_the_login(
    http: httpx.Client, activity_deps: ActivityDeps, settings: Settings
) -> None:
    # CLIENT_CONTRACT §2.3: each 403's re-issue reads the refresh token from the Keychain, so a burst
    # whose 403s come back one by one mixes the first token with the one the first re-issue stored.
    app = _signed_in(http)
    first = app.refresh
    assert app.reissue().status_code == 200  # the first 403: generation 0 -> 1, stored
    stored = app.refresh
    for token in (stored, first, stored, first):  # later 403s of the same burst, in any order
        late = IOSClient(http, access=app.access, refresh=token, email=app.email)
        assert late.reissue().status_code == 200
        assert _claims(settings, late.refresh)["gen"] == 1 and _authed_call(late) == 200
    row = _login_row(activity_deps, app)
    assert row.generation == 1 and row.revoked_at is None


def test_the_just_rotated_token_is_reuse_after_the_grace_window(
    http: httpx.Client, activity_deps: ActivityDeps, settings: Settings
) -> None:
    app = _signed_in(http)
    stolen = app.refresh
    assert app.reissue().status_code == 200
    thief = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    # Within the window the just-rotated token gets the current pair (the residual risk the README names).
    assert thief.reissue().status_code == 200
    # The window has passed: the rotation is moved back in the database rather than waited for.
    move_rotation_back(activity_deps, app, settings.refresh_reuse_grace_seconds + 1)
    late = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    assert late.reissue().status_code == 403
    # The whole login is revoked: the legitimate app's tokens stop working too.
    assert _authed_call(app) == 403
    assert app.reissue().status_code == 403
    assert _login_row(activity_deps, app).revoked_at is not None


def test_an_older_generation_is_reuse_at_once(
    http: httpx.Client, activity_deps: ActivityDeps, settings: Settings
) -> None:
    app = _signed_in(http)
    stolen = app.refresh
    reissue_twice(activity_deps, app, settings.refresh_reuse_grace_seconds)  # the stolen token is two behind
    thief = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    assert thief.reissue().status_code == 403
    assert _authed_call(app) == 403
    assert app.reissue().status_code == 403
    row = _login_row(activity_deps, app)
    with activity_deps.sessions() as session:
        records = session.scalars(select(Revocation).where(Revocation.subject == row.id)).all()
    assert row.revoked_at is not None and [r.kind for r in records] == ["session"]


def test_a_refresh_token_is_not_an_access_token(http: httpx.Client) -> None:
    app = _signed_in(http)
    app.access = app.refresh
    assert _authed_call(app) == 403


def test_bad_tokens_and_mismatched_email_are_403(http: httpx.Client) -> None:
    app = _signed_in(http)
    good = app.access
    for access, email in [
        ("", app.email),
        ("Bearer garbage", app.email),
        (good.removeprefix("Bearer "), app.email),
        (good, "someone-else@gmail.com+kakao"),
        (good, ""),
    ]:
        probe = IOSClient(http, access=access, email=email)
        assert _authed_call(probe) == 403, (access[:20], email)


def test_reissue_without_email_or_refresh_is_403_not_500(http: httpx.Client) -> None:
    app = _signed_in(http)
    assert (
        http.get("/auth-service/reIssueToken", headers={"Authorization-refresh": app.refresh}).status_code
        == 403
    )
    assert http.get("/auth-service/reIssueToken", headers={"Email": app.email}).status_code == 403


def test_expired_access_token_is_403(http: httpx.Client, settings: Settings) -> None:
    app = _signed_in(http)
    claims = jwt.decode(app.access.removeprefix("Bearer "), settings.jwt_secret, algorithms=["HS512"])
    claims["exp"] = 1
    app.access = "Bearer " + jwt.encode(claims, settings.jwt_secret, algorithm="HS512")
    assert _authed_call(app) == 403


def test_sign_out_revokes_this_login_only(http: httpx.Client) -> None:
    email = f"so{uuid.uuid4().hex[:8]}@gmail.com"
    phone, tablet = IOSClient(http), IOSClient(http)
    assert phone.sign_in(email).status_code == 200
    assert tablet.sign_in(email).status_code == 200
    assert phone.post_multipart("/auth-service/signOut", []).json() == {"email": phone.email, "success": True}
    assert _authed_call(phone) == 403
    assert phone.reissue().status_code == 403
    assert _authed_call(tablet) == 200


def test_an_internationalised_e_mail_comes_back_in_its_utf8_header_and_is_recognised(
    http: httpx.Client,
) -> None:
    """signIn writes the ``email`` header in UTF-8; the app sends those bytes back as they came, and
    the API reads them as UTF-8 (not as Latin-1, Starlette's decoding), so the account can be used."""
    app = IOSClient(http)
    address = f"jösé{uuid.uuid4().hex[:6]}@bücher.de"
    resp = app.sign_in(address)
    assert resp.status_code == 200, resp.text
    raw = dict(resp.headers.raw)
    email, access, refresh = raw[b"email"], raw[b"Authorization"], raw[b"authorization-refresh"]
    assert email == f"{address}+kakao".encode()
    authed = [(b"Authorization", access), (b"Email", email)]
    check = http.get("/auth-service/checkDuplicateNickname", params={"nickname": "nobody"}, headers=authed)
    assert check.status_code == 200, check.text
    again = http.get(
        "/auth-service/reIssueToken", headers=[(b"Authorization-refresh", refresh), (b"Email", email)]
    )
    assert again.status_code == 200, again.text
