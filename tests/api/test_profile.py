"""Profile, nickname and block endpoints as the client calls them, with identity taken from the token."""

from __future__ import annotations

import base64
import random
import unicodedata
import uuid

import httpx
import pytest
from sqlalchemy import select

from activities.deps import ActivityDeps
from storage import users
from storage.models import User
from tests.api.feed_helpers import day_feed, hangul_nick, look_alikes, spellings
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


def test_acting_for_someone_else_is_400(http: httpx.Client) -> None:
    victim_nick = _nick()
    victim = _member(http, victim_nick)
    attacker_nick = _nick()
    attacker = _member(http, attacker_nick)
    calls = [
        ("/auth-service/setProfile", [("email", victim.email), ("nickname", _nick())]),
        ("/auth-service/block", [("srcNickname", victim_nick), ("dstNickname", "x")]),
        ("/auth-service/unblock", [("srcNickname", victim_nick), ("dstNickname", "x")]),
    ]
    # Other spellings of the victim's nickname (padded, decomposed) name the victim too.
    korean_victim = hangul_nick()
    _member(http, korean_victim)
    for form in [f"{victim_nick} ", f" {victim_nick}", *spellings(korean_victim)]:
        calls.append(("/auth-service/block", [("srcNickname", form), ("dstNickname", attacker_nick)]))
        calls.append(("/auth-service/unblock", [("srcNickname", form), ("dstNickname", attacker_nick)]))
    for path, fields in calls:
        # 400, not 403: a new token cannot change whose name it is (the client would re-issue forever).
        assert attacker.post_multipart(path, fields).status_code == 400, (path, fields)
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


# -- nickname hygiene (issue 12, point 6) -------------------------------------------------------


def _stored(deps: ActivityDeps, email: str) -> User:
    """The users row of ``email``, as the database holds it."""
    with deps.sessions() as session:
        row = session.scalars(select(User).where(User.account_email == email)).one()
        session.expunge(row)
        return row


def _set_nickname(app: IOSClient, nickname: str) -> httpx.Response:
    return app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nickname)])


INVISIBLE = [
    ("zero-width space", "ali\u200bce"),
    ("zero-width joiner", "ali\u200dce"),
    ("byte-order mark", "\ufeffalice"),
    ("right-to-left override", "\u202ealice"),
    ("right-to-left mark", "alice\u200f"),
    ("first-strong isolate", "\u2068alice"),
    ("NUL", "ali\x00ce"),
    ("escape", "ali\x1bce"),
    ("inner newline", "ali\nce"),
    ("line separator", "ali\u2028ce"),
    ("Hangul filler", "\u3164"),
]


#: Each reads as the member's nickname ``ab<suffix>`` (or as nothing) but has look-alike keys of its own.
DISGUISED = [
    ("hair space", "a\u200ab{}"),
    ("thin space", "a\u2009b{}"),
    ("two spaces", "a  b{}"),
    ("Braille blank", "ab{}\u2800"),
    ("blank alone", "\u2800"),
    ("private use", "ab{}\uf8ff"),
]


@pytest.mark.parametrize(("what", "template"), DISGUISED, ids=[w for w, _ in DISGUISED])
def test_a_nickname_disguised_with_spaces_or_blanks_is_refused(
    http: httpx.Client, activity_deps: ActivityDeps, what: str, template: str
) -> None:
    suffix = uuid.uuid4().hex[:5]
    _member(http, f"ab{suffix}" if "  " not in template else f"a b{suffix}")
    impostor = _member(http)
    nickname = template.format(suffix)
    check = impostor.get_query("/auth-service/checkDuplicateNickname", {"nickname": nickname})
    assert check.status_code == 400, (what, check.text)
    resp = impostor.post_multipart(
        "/auth-service/setProfile", [("email", impostor.email), ("nickname", nickname)]
    )
    assert resp.status_code == 400, (what, resp.text)
    assert resp.json()["message"].startswith("nickname must not contain"), what
    assert _stored(activity_deps, impostor.email).nickname is None


@pytest.mark.parametrize(("what", "nickname"), INVISIBLE, ids=[w for w, _ in INVISIBLE])
def test_set_profile_refuses_control_and_format_characters_and_changes_nothing(
    http: httpx.Client, activity_deps: ActivityDeps, what: str, nickname: str
) -> None:
    newcomer = _member(http)
    resp = newcomer.post_multipart(
        "/auth-service/setProfile",
        [("email", newcomer.email), ("nickname", nickname), ("introduction", "new")],
    )
    assert resp.status_code == 400, what
    assert "nickname must not contain control, format or invisible characters (U+" in resp.json()["message"]
    assert _stored(activity_deps, newcomer.email).nickname is None

    nick = _nick()
    member = _member(http, nick)
    before = _stored(activity_deps, member.email)
    resp = member.post_multipart(
        "/auth-service/setProfile",
        [
            ("email", member.email),
            ("nickname", nickname),
            ("profileImg", ("jpeg", PNG, "image/jpeg")),
            ("introduction", "new"),
        ],
    )
    assert resp.status_code == 400, what
    after = _stored(activity_deps, member.email)
    assert (after.nickname, after.introduction, after.profile_image_type) == (
        nick,
        before.introduction,
        before.profile_image_type,
    )
    check = member.get_query("/auth-service/checkDuplicateNickname", {"nickname": nickname})
    assert check.status_code == 400 and "nickname must not contain" in check.json()["message"]


def test_a_padded_nickname_is_stored_trimmed_and_every_spelling_of_it_is_taken(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    alice = "a" + uuid.uuid4().hex[:7]
    owner = _member(http)
    assert _set_nickname(owner, f"{alice} ").json() == {"email": owner.email, "success": True}
    assert _stored(activity_deps, owner.email).nickname == alice
    assert IOSClient(http).sign_in(owner.email.rsplit("+", 1)[0]).json() == {"nickname": alice}

    korean = hangul_nick()
    nfd = unicodedata.normalize("NFD", korean)
    korean_owner = _member(http)
    assert _set_nickname(korean_owner, f" {nfd} ").status_code == 200
    assert _stored(activity_deps, korean_owner.email).nickname == korean  # stored composed

    second = _member(http)
    for taken in [alice, f" {alice}", f"{alice} ", f"\t{alice}\u3000", korean, *spellings(korean)]:
        resp = _set_nickname(second, taken)
        assert resp.status_code == 409 and "taken" in resp.json()["message"], repr(taken)
        check = second.get_query("/auth-service/checkDuplicateNickname", {"nickname": taken})
        assert check.json() == {"email": None, "isPresent": True}, repr(taken)
    assert _stored(activity_deps, second.email).nickname is None
    # The owners may send their own nickname in any spelling: it stays what it is.
    assert _set_nickname(owner, f" {alice}").status_code == 200
    assert _set_nickname(korean_owner, nfd).status_code == 200
    assert _stored(activity_deps, korean_owner.email).nickname == korean
    own = owner.get_query("/auth-service/checkDuplicateNickname", {"nickname": f"{alice} "})
    assert own.json() == {"email": None, "isPresent": False}


def test_profile_look_ups_read_every_spelling_as_the_same_user(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    nick, me_nick = hangul_nick(), _nick()
    target, me = _member(http, nick), _member(http, me_nick)
    target_id, me_id = _stored(activity_deps, target.email).id, _stored(activity_deps, me.email).id
    for form in spellings(nick):
        assert me.post_multipart("/auth-service/findIntroduction", [("nickname", form)]).json() == {
            "introduction": "매일 작은 행복 기록 중"
        }
        img = me.post_multipart("/auth-service/findProfileImg", [("nickname", form)]).json()
        assert img == {"nickname": nick, "profileImg": base64.b64encode(JPEG).decode()}
        parts = [("srcNickname", f" {me_nick} "), ("dstNickname", form)]
        assert me.post_multipart("/auth-service/block", parts).json() == {"success": True}
        with activity_deps.sessions() as session:
            assert users.blocked_ids(session, me_id) == {target_id}
        assert me.post_multipart("/auth-service/unblock", parts).json() == {"success": True}
        with activity_deps.sessions() as session:
            assert users.blocked_ids(session, me_id) == set()
    # Oneself in another spelling is still oneself.
    parts = [("srcNickname", me_nick), ("dstNickname", f"{me_nick} ")]
    assert me.post_multipart("/auth-service/block", parts).json() == {"success": False}


def test_profile_look_ups_refuse_look_alikes_with_400(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    nick, me_nick = hangul_nick(), _nick()
    _member(http, nick)
    me = _member(http, me_nick)
    for fake in look_alikes(nick):
        for path in ("/auth-service/findIntroduction", "/auth-service/findProfileImg"):
            resp = me.post_multipart(path, [("nickname", fake)])
            assert resp.status_code == 400 and resp.json()["message"].startswith("nickname must not"), path
        resp = me.post_multipart("/auth-service/block", [("srcNickname", me_nick), ("dstNickname", fake)])
        assert resp.status_code == 400 and resp.json()["message"].startswith("dstNickname must not")
    resp = me.post_multipart(
        "/auth-service/block", [("srcNickname", f"{me_nick}\u200b"), ("dstNickname", nick)]
    )
    assert resp.status_code == 400 and resp.json()["message"].startswith("srcNickname must not")
    with activity_deps.sessions() as session:
        assert users.blocked_ids(session, _stored(activity_deps, me.email).id) == set()


def test_the_length_limit_counts_characters_after_nfc(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    syllables = "".join(chr(random.randrange(0xAC00, 0xD7A4)) for _ in range(10))
    app = _member(http)
    assert _set_nickname(app, unicodedata.normalize("NFD", syllables + "가")).status_code == 400
    decomposed = unicodedata.normalize("NFD", syllables)
    assert len(decomposed) >= 20  # every syllable is two or three code points decomposed
    assert _set_nickname(app, decomposed).status_code == 200
    assert _stored(activity_deps, app.email).nickname == syllables


#: Emoji joined by ZWJ, a regional-indicator flag, a tag-sequence flag (England), a Persian ZWNJ.
PEOPLES_TEXT = "👨\u200d👩\u200d👧 🇰🇷 \U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f می\u200cخواهم"


@pytest.mark.parametrize(
    "bad",
    [
        "hi\u202eereh",
        "nul\x00",
        "esc\x1b[31m",
        "read \ufff9this\ufffathat\ufffb",  # an interlinear annotation
        "hi\U000e0068\U000e0069\U000e0064\U000e0065",  # tag characters: invisible "hide"
        "zero\ufeffwidth",
    ],
)
def test_free_text_with_control_direction_or_hidden_text_characters_is_400_and_changes_nothing(
    http: httpx.Client, bad: str
) -> None:
    """An introduction or an entry's text is shown to others as written: a character that only
    disguises or breaks it, or carries text nobody sees, is refused by name, and nothing is stored;
    emoji with their joiners, flags and the joiners scripts use are stored as written."""
    app = IOSClient(http)
    assert app.sign_in(f"ft{uuid.uuid4().hex[:8]}@gmail.com").status_code == 200
    nickname = "f" + uuid.uuid4().hex[:7]
    fields = [("email", app.email), ("nickname", nickname), ("introduction", "hello")]
    assert app.post_multipart("/auth-service/setProfile", fields).status_code == 200
    app.nickname = nickname
    resp = app.post_multipart("/auth-service/setProfile", [*fields[:2], ("introduction", bad)])
    assert resp.status_code == 400 and resp.json()["message"].startswith("introduction must not contain")
    intro = app.post_multipart("/auth-service/findIntroduction", [("nickname", nickname)])
    assert intro.json() == {"introduction": "hello"}
    resp = app.save_feed(2024012017042712, text=bad)
    assert resp.status_code == 400 and resp.json()["message"].startswith("text must not contain"), resp.text
    assert app.save_feed(2024012017042712, text=PEOPLES_TEXT).status_code == 200
    assert day_feed(app, nickname, 2024012017042712).json()["text"] == PEOPLES_TEXT
    fields[2] = ("introduction", PEOPLES_TEXT)
    assert app.post_multipart("/auth-service/setProfile", fields).status_code == 200
    intro = app.post_multipart("/auth-service/findIntroduction", [("nickname", nickname)])
    assert intro.json() == {"introduction": PEOPLES_TEXT}
