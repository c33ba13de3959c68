"""Profile, nickname and block endpoints as the client calls them, with identity taken from the token."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest

from tests.fixtures.ios_client import IOSClient

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _nick() -> str:
    return "n" + uuid.uuid4().hex[:8]


def _member(http: httpx.Client, nickname: str | None = None) -> IOSClient:
    app = IOSClient(http)
    assert app.sign_in(f"p{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    if nickname:
        resp = app.post_multipart(
            "/auth-service/setProfile",
            [
                ("email", app.email),
                ("nickname", nickname),
                ("profileImg", ("jpeg", JPEG, "image/jpeg")),
                ("introduction", "매일 작은 행복 기록 중"),
            ],
        )
        assert resp.status_code == 200, resp.text
    return app


def test_sign_up_flow_sets_the_profile(http: httpx.Client) -> None:
    app = _member(http)
    nick = _nick()
    assert app.get_query("/auth-service/checkDuplicateNickname", {"nickname": nick}).json() == {
        "email": None,
        "isPresent": False,
    }
    resp = app.post_multipart(
        "/auth-service/setProfile",
        [
            ("email", app.email),
            ("nickname", nick),
            ("profileImg", ("jpeg", JPEG, "image/jpeg")),
            ("introduction", "소개"),
        ],
    )
    assert resp.json() == {"email": app.email, "success": True}
    assert app.post_multipart("/auth-service/findIntroduction", [("nickname", nick)]).json() == {
        "introduction": "소개"
    }
    img = app.post_multipart("/auth-service/findProfileImg", [("nickname", nick)]).json()
    assert img == {"nickname": nick, "profileImg": base64.b64encode(JPEG).decode()}
    # Signing in again now reports the nickname (main screen instead of sign-up).
    again = IOSClient(http)
    assert again.sign_in(app.email.rsplit("+", 1)[0]).json() == {"nickname": nick}


def test_a_taken_nickname_is_409_and_never_reveals_the_owner(http: httpx.Client) -> None:
    nick = _nick()
    _member(http, nick)
    other = _member(http)
    assert other.get_query("/auth-service/checkDuplicateNickname", {"nickname": nick}).json() == {
        "email": None,
        "isPresent": True,
    }
    resp = other.post_multipart(
        "/auth-service/setProfile",
        [("email", other.email), ("nickname", nick), ("profileImg", ("jpeg", JPEG, "image/jpeg"))],
    )
    assert resp.status_code == 409 and "taken" in resp.json()["message"]


@pytest.mark.parametrize(
    ("nickname", "reason"), [("", "required"), ("   ", "empty"), ("a" * 11, "at most 10")]
)
def test_invalid_nicknames_are_400(http: httpx.Client, nickname: str, reason: str) -> None:
    app = _member(http)
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nickname)])
    assert resp.status_code == 400 and reason in resp.json()["message"]


def test_profile_limits(http: httpx.Client) -> None:
    app = _member(http)
    too_long = app.post_multipart(
        "/auth-service/setProfile",
        [("email", app.email), ("nickname", _nick()), ("introduction", "가" * 256)],
    )
    assert too_long.status_code == 400 and "introduction" in too_long.json()["message"]
    not_image = app.post_multipart(
        "/auth-service/setProfile",
        [("email", app.email), ("nickname", _nick()), ("profileImg", ("jpeg", b"GIF89a....", "image/jpeg"))],
    )
    assert not_image.status_code == 400 and "JPEG, PNG or HEIC" in not_image.json()["message"]
    png = app.post_multipart(
        "/auth-service/setProfile",
        [("email", app.email), ("nickname", _nick()), ("profileImg", ("jpeg", PNG, "image/jpeg"))],
    )
    assert png.status_code == 200


def test_unknown_users_read_as_empty_strings(http: httpx.Client) -> None:
    app = _member(http)
    assert app.post_multipart("/auth-service/findIntroduction", [("nickname", "ghost")]).json() == {
        "introduction": ""
    }
    assert app.post_multipart("/auth-service/findProfileImg", [("nickname", "ghost")]).json() == {
        "nickname": "",
        "profileImg": "",
    }


def test_block_and_unblock(http: httpx.Client) -> None:
    me_nick, other_nick = _nick(), _nick()
    me = _member(http, me_nick)
    _member(http, other_nick)
    assert me.post_multipart(
        "/auth-service/block", [("srcNickname", me_nick), ("dstNickname", other_nick)]
    ).json() == {"success": True}
    assert me.post_multipart(
        "/auth-service/block", [("srcNickname", me_nick), ("dstNickname", other_nick)]
    ).json() == {"success": True}
    assert me.post_multipart(
        "/auth-service/unblock", [("srcNickname", me_nick), ("dstNickname", other_nick)]
    ).json() == {"success": True}
    assert me.post_multipart(
        "/auth-service/block", [("srcNickname", me_nick), ("dstNickname", "ghost")]
    ).json() == {"success": False}


def test_acting_for_someone_else_is_403(http: httpx.Client) -> None:
    victim_nick = _nick()
    victim = _member(http, victim_nick)
    attacker = _member(http, _nick())
    calls = [
        ("/auth-service/setProfile", [("email", victim.email), ("nickname", _nick())]),
        ("/auth-service/block", [("srcNickname", victim_nick), ("dstNickname", "x")]),
        ("/auth-service/unblock", [("srcNickname", victim_nick), ("dstNickname", "x")]),
    ]
    for path, fields in calls:
        assert attacker.post_multipart(path, fields).status_code == 403, path
    # The attacker's token with the victim's Email header is refused everywhere.
    forged = IOSClient(http, access=attacker.access, email=victim.email)
    assert (
        forged.post_multipart("/auth-service/findIntroduction", [("nickname", victim_nick)]).status_code
        == 403
    )


def test_every_authed_endpoint_refuses_a_missing_token(http: httpx.Client) -> None:
    anonymous = IOSClient(http)
    for path in [
        "/auth-service/setProfile",
        "/auth-service/findProfileImg",
        "/auth-service/findIntroduction",
        "/auth-service/block",
        "/auth-service/unblock",
        "/auth-service/signOut",
    ]:
        assert anonymous.post_multipart(path, [("nickname", "x")]).status_code == 403, path
    assert anonymous.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 403
