"""Token re-issue, rotation, reuse detection, sign-out and 403s, as the iOS client's interceptor sees them."""

from __future__ import annotations

import uuid

import httpx
import jwt

from config import Settings
from tests.fixtures.ios_client import IOSClient


def _signed_in(http: httpx.Client) -> IOSClient:
    app = IOSClient(http)
    assert app.sign_in(f"t{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    return app


def _authed_call(app: IOSClient) -> int:
    return app.get_query("/auth-service/checkDuplicateNickname", {"nickname": "nobody"}).status_code


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


def test_a_replayed_refresh_token_revokes_the_login(http: httpx.Client) -> None:
    app = _signed_in(http)
    stolen = app.refresh
    assert app.reissue().status_code == 200
    thief = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    assert thief.reissue().status_code == 403
    # The whole login is revoked: the legitimate app's tokens stop working too.
    assert _authed_call(app) == 403
    assert app.reissue().status_code == 403


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
