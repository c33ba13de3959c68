"""DM history over HTTP (BACKEND_SPEC §9.1): a room's pages backwards in time, the list of a user's
rooms with each room's last message, who may read them, and bad input answered with 400."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from devstack.processes import free_port
from dm.messages import StoredMessage
from tests.api.feed_helpers import look_alikes, spellings
from tests.dm.helpers import store_message
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient


class Hub:
    """Stores messages as the DM hub does with an accepted frame (``tests.dm.helpers``)."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    def insert(self, sender: str, receiver: str, date: int, text: str) -> StoredMessage:
        """Store one message from the user holding ``sender`` to the one holding ``receiver``."""
        return store_message(self._deps, sender, receiver, date, text)


HISTORY = "/dm-service/findDirectMessage"
ROOMS = "/dm-service/findMultipleDirectMessage"
BASE = 2024031509000000  # 2024-03-15 09:00:00.00 KST, yyyyMMddHHmmssSS


def _member(http: httpx.Client, prefix: str = "d") -> IOSClient:
    """A signed-up app whose nickname starts with ``prefix`` (10 characters at most)."""
    return IOSClient(http).sign_up(prefix + uuid.uuid4().hex[: 9 - len(prefix)])


def _history(app: IOSClient, sender: str, receiver: str, boundary: int, count: int | None = None) -> Any:
    """findDirectMessage as multipart; returns the 200 body."""
    parts = [("sender", sender), ("receiver", receiver), ("timeBoundary", str(boundary))]
    if count is not None:
        parts.append(("messageCnt", str(count)))
    resp = app.post_multipart(HISTORY, parts)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    return resp.json()


def _rooms(app: IOSClient, sender: str) -> Any:
    """findMultipleDirectMessage as multipart; returns the 200 body."""
    resp = app.post_multipart(ROOMS, [("sender", sender)])
    assert resp.status_code == 200, resp.text
    return resp.json()


def _dto(sender: str, receiver: str, date: int, text: str) -> dict[str, Any]:
    return {"sender": sender, "receiver": receiver, "date": date, "text": text}


def test_history_pages_backwards_oldest_first(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    store = Hub(activity_deps)
    sent = []
    for i in range(45):
        src, dst = (alice, bob) if i % 3 else (bob, alice)
        date = BASE + i * 100  # one second apart
        store.insert(src.nickname, dst.nickname, date, f"메시지 {i}")
        sent.append(_dto(src.nickname, dst.nickname, date, f"메시지 {i}"))
    boundary = BASE + 45 * 100
    # Not in the pages: a message at the boundary (exclusive) and one in another of alice's rooms.
    store.insert(alice.nickname, bob.nickname, boundary, "at the boundary")
    store.insert(alice.nickname, carol.nickname, BASE + 4400, "other room")

    first = _history(alice, alice.nickname, bob.nickname, boundary, 20)
    assert first == sent[25:45]
    second = _history(alice, alice.nickname, bob.nickname, first[0]["date"], 20)
    assert second == sent[5:25]
    third = _history(alice, alice.nickname, bob.nickname, second[0]["date"], 20)
    assert third == sent[0:5]
    assert _history(alice, alice.nickname, bob.nickname, third[0]["date"], 20) == []

    # The room is the same whichever way round it is named, and the receiver may read it too.
    assert _history(bob, alice.nickname, bob.nickname, boundary, 20) == first
    assert _history(bob, bob.nickname, alice.nickname, first[0]["date"], 20) == second
    # The same request as a query string and as a JSON body (§2.1) gives the same page.
    query: dict[str, str | int] = {
        "sender": alice.nickname,
        "receiver": bob.nickname,
        "timeBoundary": boundary,
        "messageCnt": 20,
    }
    assert alice.post_query(HISTORY, query).json() == first
    resp = http.post(HISTORY, json=query, headers={"Authorization": alice.access, "email": alice.email})
    assert resp.status_code == 200 and resp.json() == first


def test_messages_sharing_a_date_are_never_split_across_pages(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """Paging back with the oldest date returned as the next ``timeBoundary`` (the client's way) reaches
    every message once, even where several share a date (one client clock tick, or server-set dates
    within one centisecond under a burst)."""
    hub, alice, bob = Hub(activity_deps), _member(http), _member(http)
    texts = ["older", *(f"tied {i}" for i in range(5)), "newest"]
    dates = [BASE - 1, *([BASE] * 5), BASE + 1]
    for text, date in zip(texts, dates, strict=True):
        hub.insert(alice.nickname, bob.nickname, date, text)
    seen: list[str] = []
    boundary = BASE + 2
    while page := _history(alice, alice.nickname, bob.nickname, boundary, count=2):
        seen[:0] = [m["text"] for m in page]
        boundary = page[0]["date"]
    assert seen == texts


def test_message_count_defaults_to_20_and_allows_1_to_100(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    alice, bob = _member(http), _member(http)
    sent = []
    for i in range(105):
        Hub(activity_deps).insert(alice.nickname, bob.nickname, BASE + i, f"m{i}")
        sent.append(_dto(alice.nickname, bob.nickname, BASE + i, f"m{i}"))
    assert _history(alice, alice.nickname, bob.nickname, BASE + 105) == sent[85:]
    assert _history(alice, alice.nickname, bob.nickname, BASE + 105, 1) == sent[104:]
    assert _history(alice, alice.nickname, bob.nickname, BASE + 105, 100) == sent[5:]


def test_room_list_holds_each_rooms_last_message_by_date(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    alice, bob, carol, dave, loner = (_member(http) for _ in range(5))
    a, b, c, d = alice.nickname, bob.nickname, carol.nickname, dave.nickname
    store = Hub(activity_deps)
    store.insert(a, b, BASE + 300, "b first at 300")
    store.insert(a, b, BASE + 300, "b second at 300")  # same date, same side: the later stored wins
    store.insert(b, a, BASE + 100, "b older, stored last")  # the last stored is not the last by date
    store.insert(a, c, BASE + 200, "c sent at 200")
    store.insert(c, a, BASE + 200, "c received at 200")  # same date, other side: the later stored wins
    store.insert(d, a, BASE + 250, "d at 250")
    store.insert(b, c, BASE + 999, "not alice's")

    assert _rooms(alice, a) == [
        _dto(a, b, BASE + 300, "b second at 300"),
        _dto(d, a, BASE + 250, "d at 250"),
        _dto(c, a, BASE + 200, "c received at 200"),
    ]
    assert _rooms(bob, b) == [
        _dto(b, c, BASE + 999, "not alice's"),
        _dto(a, b, BASE + 300, "b second at 300"),
    ]
    assert _rooms(dave, d) == [_dto(d, a, BASE + 250, "d at 250")]
    assert _rooms(loner, loner.nickname) == []


def test_only_participants_read_a_room(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    alice, bob, eve = _member(http), _member(http), _member(http)
    Hub(activity_deps).insert(alice.nickname, bob.nickname, BASE, "private")
    parts = [("sender", alice.nickname), ("receiver", bob.nickname), ("timeBoundary", str(BASE + 1))]

    resp = eve.post_multipart(HISTORY, parts)
    assert resp.status_code == 400
    assert resp.json()["message"] == "the caller must be the sender or the receiver of the conversation"
    resp = eve.post_multipart(ROOMS, [("sender", alice.nickname)])
    assert resp.status_code == 400 and resp.json()["message"] == "sender must be the caller's own nickname"
    assert _rooms(eve, eve.nickname) == []

    # Signed in but without a nickname yet: part of no conversation.
    newcomer = IOSClient(http)
    assert newcomer.sign_in(f"u{uuid.uuid4().hex[:12]}@gmail.com").status_code == 200
    resp = newcomer.post_multipart(HISTORY, parts)
    assert resp.status_code == 400 and "nickname" in resp.json()["message"]
    assert newcomer.post_multipart(ROOMS, [("sender", alice.nickname)]).status_code == 400

    # Without a token nothing is read.
    assert alice.post_multipart(HISTORY, parts, authed=False).status_code == 403
    assert _history(alice, alice.nickname, bob.nickname, BASE + 1) == [
        _dto(alice.nickname, bob.nickname, BASE, "private")
    ]


@pytest.mark.parametrize(
    ("path", "parts", "field"),
    [
        (HISTORY, [("receiver", "{b}"), ("timeBoundary", "2024031509000000")], "sender"),
        (HISTORY, [("sender", ""), ("receiver", "{b}"), ("timeBoundary", "2024031509000000")], "sender"),
        (HISTORY, [("sender", "{a}"), ("timeBoundary", "2024031509000000")], "receiver"),
        (HISTORY, [("sender", "{a}"), ("receiver", "{b}")], "timeBoundary"),
        (HISTORY, [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "yesterday")], "timeBoundary"),
        (HISTORY, [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "-5")], "timeBoundary"),
        (HISTORY, [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "1" * 20)], "timeBoundary"),
        (
            HISTORY,
            [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "1"), ("messageCnt", "0")],
            "messageCnt",
        ),
        (
            HISTORY,
            [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "1"), ("messageCnt", "101")],
            "messageCnt",
        ),
        (
            HISTORY,
            [("sender", "{a}"), ("receiver", "{b}"), ("timeBoundary", "1"), ("messageCnt", "x")],
            "messageCnt",
        ),
        (ROOMS, [], "sender"),
        (ROOMS, [("sender", "")], "sender"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    http: httpx.Client, path: str, parts: list[tuple[str, str]], field: str
) -> None:
    alice, bob = _member(http), _member(http)
    filled = [(k, v.format(a=alice.nickname, b=bob.nickname)) for k, v in parts]
    resp = alice.post_multipart(path, filled)
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["message"], resp.json()


def test_non_ascii_and_emoji_nicknames(http: httpx.Client, activity_deps: ActivityDeps) -> None:
    # U+FF5E sorts after the emoji's surrogate pair in UTF-16, before it in code points.
    smile, tilde, hangul = _member(http, "\U0001f600"), _member(http, "\uff5e"), _member(http, "하늘")
    s, t, h = smile.nickname, tilde.nickname, hangul.nickname
    store = Hub(activity_deps)
    store.insert(t, s, BASE + 1, "～ to 😀")
    store.insert(s, t, BASE + 2, "😀 to ～ 👋")
    store.insert(h, s, BASE + 3, "안녕")

    page = [_dto(t, s, BASE + 1, "～ to 😀"), _dto(s, t, BASE + 2, "😀 to ～ 👋")]
    assert _history(smile, s, t, BASE + 10) == page
    assert _history(tilde, s, t, BASE + 10) == page
    assert _history(hangul, h, s, BASE + 10) == [_dto(h, s, BASE + 3, "안녕")]
    assert _rooms(smile, s) == [_dto(h, s, BASE + 3, "안녕"), _dto(s, t, BASE + 2, "😀 to ～ 👋")]
    # Stored under the room id the original (Java, UTF-16 order) computes.
    collection = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert {doc["messageRoomId"] for doc in collection.find({"sender": s})} == {f"{s},{t}"}


def test_an_unreachable_mongodb_is_a_503_not_a_500(
    http: httpx.Client, settings: Settings, activity_deps: ActivityDeps
) -> None:
    alice, bob = _member(http), _member(http)
    # A room row, so the page is read from MongoDB (a room with none has nothing committed to read).
    store_message(activity_deps, alice.nickname, bob.nickname, BASE - 1, "hi")
    dead = settings.model_copy(update={"mongo_url": f"mongodb://127.0.0.1:{free_port()}"})
    with serve_in_thread(create_app(dead), http="h11") as url:
        replica = IOSClient(httpx.Client(base_url=url, timeout=30), access=alice.access, email=alice.email)
        resp = replica.post_multipart(
            HISTORY, [("sender", alice.nickname), ("receiver", bob.nickname), ("timeBoundary", str(BASE))]
        )
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert resp.json()["message"] == "mongodb is unavailable"


def test_every_spelling_of_a_nickname_names_the_same_participant(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    alice, bob, eve = _member(http, "행"), _member(http, "복"), _member(http)
    a, b = alice.nickname, bob.nickname
    Hub(activity_deps).insert(a, b, BASE, "hi")
    page = [_dto(a, b, BASE, "hi")]
    for mine, theirs in zip(spellings(a), spellings(b), strict=True):
        assert _history(alice, mine, theirs, BASE + 1) == page
        assert _history(bob, theirs, mine, BASE + 1) == page
        assert _rooms(alice, mine) == page
        # Someone else's spelling names them, never the caller.
        parts = [("sender", mine), ("receiver", theirs), ("timeBoundary", str(BASE + 1))]
        assert eve.post_multipart(HISTORY, parts).status_code == 400
        assert eve.post_multipart(ROOMS, [("sender", mine)]).status_code == 400
    for fake in look_alikes(a):
        parts = [("sender", fake), ("receiver", b), ("timeBoundary", str(BASE + 1))]
        resp = alice.post_multipart(HISTORY, parts)
        assert resp.status_code == 400 and resp.json()["message"].startswith("sender must not"), fake
        parts = [("sender", a), ("receiver", fake), ("timeBoundary", str(BASE + 1))]
        resp = bob.post_multipart(HISTORY, parts)
        assert resp.status_code == 400 and resp.json()["message"].startswith("receiver must not"), fake
        resp = alice.post_multipart(ROOMS, [("sender", fake)])
        assert resp.status_code == 400, fake
