"""Large uploads are capped per process (429 with ``Retry-After`` before the body is read), a chunked body
is cut off past the request limit (413), a body that stops arriving or falls behind the rate floor is
cut off (408) and gives its slot back, and a refused upload changes nothing that was stored."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import Message, Receive, Scope, Send

from activities.deps import ActivityDeps
from api.errors import RequestTimeout
from api.main import create_app
from api.uploads import LargeUploadLimit, UploadSlots
from config import Settings
from feeds.entries import MAX_IMAGE_BYTES
from storage.models import Feed, FeedImage, FeedImageChunk
from tests.api.feed_helpers import JPEG, PNG, day_feed, feed_count, kst, member, unique_year, user_id
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient, code_challenge, code_verifier, multipart
from tests.fixtures.waiting import wait_until

LIMIT_BYTES = 4 * 1024 * 1024
LARGE_PNG = PNG + bytes(range(256)) * (2 * 1024 * 1024 // 256)  # over the 1 MiB large-upload threshold


@dataclass
class Replica:
    """An API process of its own that takes in one large upload at a time."""

    app: FastAPI
    http: httpx.Client
    host: str
    port: int

    @property
    def in_flight(self) -> int:
        return int(self.app.state.upload_slots.in_flight)


@pytest.fixture(scope="module")
def replica(settings: Settings, api_url: str) -> Iterator[Replica]:
    # The longest grace before the rate floor: the tests here hold an upload open on purpose.
    small = settings.model_copy(
        update={"max_large_uploads": 1, "max_request_bytes": LIMIT_BYTES, "upload_rate_grace_seconds": 300}
    )
    app = create_app(small)
    with serve_in_thread(app, http="h11") as url, httpx.Client(base_url=url, timeout=60) as http:
        host, port = url.removeprefix("http://").split(":")
        yield Replica(app, http, host, int(port))


Part = tuple[str, str | tuple[str, bytes, str]]


def _save_parts(app: IOSClient, date: int, images: list[bytes], text: str = "t") -> list[Part]:
    """saveFeed's parts in the app's order (as ``IOSClient.save_feed`` sends them)."""
    files: list[Part] = [
        (f"imageList[{i}]", ("image.png", data, "image/png")) for i, data in enumerate(images)
    ]
    return [
        *files,
        ("text", text),
        ("categoryList", "coffee"),
        ("isPublic", "true"),
        ("date", str(date)),
        ("weather", "sunny"),
        ("happiness", "3"),
        ("nickname", app.nickname),
    ]


def _image_rows(deps: ActivityDeps, app: IOSClient) -> tuple[int, int]:
    """How many image and chunk rows the user's entries have."""
    feeds = select(Feed.id).where(Feed.user_id == user_id(deps, app.nickname))
    images = select(FeedImage.id).where(FeedImage.feed_id.in_(feeds))
    with deps.sessions() as s:
        return (
            int(s.scalar(select(func.count()).select_from(FeedImage).where(FeedImage.id.in_(images))) or 0),
            int(
                s.scalar(
                    select(func.count())
                    .select_from(FeedImageChunk)
                    .where(FeedImageChunk.image_id.in_(images))
                )
                or 0
            ),
        )


def test_one_upload_over_the_cap_is_429_with_retry_after_and_changes_nothing(
    replica: Replica, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    holder, other, year = member(http), member(http), unique_year()
    date = kst(year, 2, 2)
    assert other.save_feed(date, images=[PNG], text="before").status_code == 200
    before = (day_feed(other, other.nickname, date).json(), _image_rows(activity_deps, other))

    body, content_type = multipart(_save_parts(holder, date, [LARGE_PNG]))
    head = _large_head(holder, body, content_type)
    with socket.create_connection((replica.host, replica.port), timeout=60) as held:
        held.sendall(head + body[: len(body) // 2])  # the upload stays open, holding the one slot
        wait_until(lambda: replica.in_flight == 1, "the held upload took the slot", deadline_seconds=60)

        other_body, other_type = multipart(_save_parts(other, date, [LARGE_PNG], text="after"))
        headers = {"Content-Type": other_type, "Authorization": other.access, "email": other.email}
        refused = replica.http.post("/feed-service/saveFeed", content=other_body, headers=headers)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
        assert "large uploads" in refused.json()["message"]
        # Small bodies never wait for a slot: the same replica answers them meanwhile.
        on_replica = IOSClient(replica.http, access=other.access, email=other.email, nickname=other.nickname)
        assert (
            day_feed(on_replica, other.nickname, date).json(),
            _image_rows(activity_deps, other),
        ) == before

        held.sendall(body[len(body) // 2 :])
        assert _answer(held).startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: replica.in_flight == 0, "the slot was given back", deadline_seconds=60)
    again = replica.http.post("/feed-service/saveFeed", content=other_body, headers=headers)
    assert again.status_code == 200
    assert day_feed(other, other.nickname, date).json()["text"] == "after"


def test_one_user_holds_at_most_their_own_share_of_the_slots(
    settings: Settings, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    shared = settings.model_copy(
        update={"max_large_uploads": 3, "max_large_uploads_per_user": 1, "upload_rate_grace_seconds": 300}
    )
    app = create_app(shared)
    hog, other, year = member(http), member(http), unique_year()
    date = kst(year, 2, 3)
    body, content_type = multipart(_save_parts(hog, date, [LARGE_PNG]))
    other_body, other_type = multipart(_save_parts(other, date, [LARGE_PNG], text="theirs"))
    with serve_in_thread(app, http="h11") as url, httpx.Client(base_url=url, timeout=60) as replica_http:
        host, port = url.removeprefix("http://").split(":")
        slots = app.state.upload_slots
        with socket.create_connection((host, int(port)), timeout=60) as held:
            held.sendall(_large_head(hog, body, content_type) + body[: len(body) // 2])
            wait_until(lambda: slots.in_flight == 1, "the held upload took a slot", deadline_seconds=60)

            # The same user's second large body is refused though two slots are free...
            mine = {"Content-Type": content_type, "Authorization": hog.access, "email": hog.email}
            refused = replica_http.post("/feed-service/saveFeed", content=body, headers=mine)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
            assert "you are sending 1 large uploads" in refused.json()["message"]
            # ... and another user's is taken in meanwhile.
            theirs = {"Content-Type": other_type, "Authorization": other.access, "email": other.email}
            assert (
                replica_http.post("/feed-service/saveFeed", content=other_body, headers=theirs).status_code
                == 200
            )

            held.sendall(body[len(body) // 2 :])
            assert _answer(held).startswith(b"HTTP/1.1 200 ")
        wait_until(
            lambda: slots.in_flight == 0 and not slots.by_user,
            "every slot was given back",
            deadline_seconds=60,
        )
        # Their own slot given back, the user uploads again.
        assert replica_http.post("/feed-service/saveFeed", content=body, headers=mine).status_code == 200
    assert feed_count(activity_deps, hog.nickname) == 1
    assert day_feed(other, other.nickname, date).json()["text"] == "theirs"


def test_a_chunked_body_past_the_request_limit_is_413_and_stores_nothing(
    replica: Replica, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me = member(http)
    body, content_type = multipart(_save_parts(me, kst(unique_year(), 3, 3), [PNG + bytes(LIMIT_BYTES)]))

    def chunked() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    headers = {"Content-Type": content_type, "Authorization": me.access, "email": me.email}
    resp = replica.http.post("/feed-service/saveFeed", content=chunked(), headers=headers)
    assert resp.status_code == 413 and f"over {LIMIT_BYTES} bytes" in resp.json()["message"]
    assert feed_count(activity_deps, me.nickname) == 0
    wait_until(lambda: replica.in_flight == 0, "the slot was given back", deadline_seconds=60)


@pytest.mark.parametrize(
    ("images", "nickname_of_other", "status"),
    [
        ([JPEG, b"GIF89a" + bytes(2 * 1024 * 1024)], False, 400),  # the second image is refused
        ([JPEG, PNG + bytes(MAX_IMAGE_BYTES)], False, 413),  # the second image is too large
        ([LARGE_PNG], True, 400),  # someone else's nickname
    ],
    ids=["not-an-image", "too-large", "not-yours"],
)
def test_a_refused_upload_leaves_the_entry_and_its_images_as_they_were(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    images: list[bytes],
    nickname_of_other: bool,
    status: int,
) -> None:
    me, stranger, year = member(http), member(http), unique_year()
    date = kst(year, 4, 4)
    assert me.save_feed(date, images=[PNG], text="before").status_code == 200
    before = day_feed(me, me.nickname, date).json()
    rows = _image_rows(activity_deps, me)
    nickname = stranger.nickname if nickname_of_other else None
    resp = me.save_feed(date, images=images, text="after", nickname=nickname)
    assert resp.status_code == status, resp.text
    assert day_feed(me, me.nickname, date).json() == before
    assert _image_rows(activity_deps, me) == rows == (1, 1)
    [image_id] = before["imageIdList"]
    assert http.get(f"/feed-service/image/{image_id}").content == PNG
    if nickname_of_other:
        assert feed_count(activity_deps, stranger.nickname) == 0


def test_the_slot_is_free_once_the_answer_is_out_before_the_app_returns() -> None:
    """uvicorn starts a connection's next request when this one's answer is out, while its app is still
    unwinding: a client uploading entry after entry on one connection must find the slot free."""
    slots = UploadSlots(limit=1, threshold=10, max_body=1000)
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(slots.in_flight)
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
        seen.append(slots.in_flight)  # the app has not returned yet

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {
        "type": "http",
        "path": "/feed-service/saveFeed",
        "headers": [(b"content-length", b"100")],
    }
    asyncio.run(LargeUploadLimit(app, slots)(scope, receive, send))
    assert seen == [1, 0] and slots.in_flight == 0


def _large_head(
    app: IOSClient | None, body: bytes, content_type: str, path: str = "/feed-service/saveFeed"
) -> bytes:
    """The head of a request to ``path`` (saveFeed) with ``body`` declared, with ``app``'s headers
    (none: anonymous)."""
    auth = f"Authorization: {app.access}\r\nemail: {app.email}\r\n" if app is not None else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


def _answer(conn: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = conn.recv(4096)
        assert chunk, "closed without an answer"
        answer += chunk
    return answer


@pytest.mark.parametrize("caller", ["anonymous", "bad token", "signed out"])
def test_a_large_body_without_a_valid_login_is_403_before_it_takes_a_slot(
    replica: Replica, http: httpx.Client, caller: str
) -> None:
    me = member(http)
    body, content_type = multipart(_save_parts(me, kst(unique_year(), 3, 3), [LARGE_PNG]))
    app: IOSClient | None = None if caller == "anonymous" else me
    if caller == "bad token":
        app = IOSClient(http, access=me.access[:-4] + "AAAA", email=me.email, nickname=me.nickname)
    elif caller == "signed out":
        assert me.post_multipart("/auth-service/signOut", []).status_code == 200
        claims = jwt.decode(me.access.removeprefix("Bearer "), options={"verify_signature": False})
        view = replica.app.state.resources.revocations
        wait_until(
            lambda: view.is_revoked(claims["sid"], claims["uid"]) is True,
            "the replica heard of the sign-out",
            deadline_seconds=60,
        )
    with socket.create_connection((replica.host, replica.port), timeout=60) as conn:
        conn.sendall(_large_head(app, body, content_type))  # no byte of the body: answered all the same
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert replica.in_flight == 0


def test_a_large_body_that_stops_arriving_is_408_and_gives_its_slot_back(
    settings: Settings, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    quick = settings.model_copy(update={"max_large_uploads": 1, "upload_idle_seconds": 1.0})
    app = create_app(quick)
    me, year = member(http), unique_year()
    date = kst(year, 3, 4)
    body, content_type = multipart(_save_parts(me, date, [LARGE_PNG]))
    with serve_in_thread(app, http="h11") as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            conn.sendall(_large_head(me, body, content_type) + body[: len(body) // 2])  # then nothing
            answer = _answer(conn)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        wait_until(
            lambda: app.state.upload_slots.in_flight == 0, "the slot was given back", deadline_seconds=60
        )
        with httpx.Client(base_url=url, timeout=60) as replica_http:
            headers = {"Content-Type": content_type, "Authorization": me.access, "email": me.email}
            assert (
                replica_http.post("/feed-service/saveFeed", content=body, headers=headers).status_code == 200
            )
    assert feed_count(activity_deps, me.nickname) == 1


class FakeClock:
    """Monotonic seconds that move only when a test moves them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _read_all(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that reads the whole body, then answers 200."""
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


@pytest.mark.parametrize(
    ("bytes_per_second", "parts_taken"),
    [(2048, 100), (100, 11)],  # the floor is 1024 B/s after 10 s: 11 parts of 100 B at 1 s each are behind
    ids=["above-the-floor", "trickled"],
)
def test_a_body_behind_the_rate_floor_after_the_grace_is_408_and_gives_its_slot_back(
    bytes_per_second: int, parts_taken: int
) -> None:
    """Each part arrives one (fake) second after the last: a body that keeps 2 KiB/s is taken whole; one
    of 100 B/s is cut off once ``grace + seen / floor`` has passed (the 11th part: 11 s > 10 + 1000/1024),
    long before the idle limit, and the slot is free again."""
    clock = FakeClock()
    slots = UploadSlots(
        limit=1,
        threshold=10,
        max_body=10**9,
        idle_seconds=60,
        min_bytes_per_second=1024,
        rate_grace_seconds=10,
    )
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        clock.now += 1
        return {"type": "http.request", "body": bytes(bytes_per_second), "more_body": calls < 100}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "path": "/feed-service/saveFeed",
        "headers": [(b"content-length", b"100000")],
    }
    limit = LargeUploadLimit(_read_all, slots, clock=clock)
    if parts_taken == 100:
        asyncio.run(limit(scope, receive, send))
        assert sent[0]["status"] == 200
    else:
        with pytest.raises(RequestTimeout, match="slower than 1024 bytes per second"):
            asyncio.run(limit(scope, receive, send))
        assert sent == []
    assert (calls, slots.in_flight) == (parts_taken, 0)


def test_a_trickled_body_is_408_and_gives_its_slot_back_to_real_uploads(
    settings: Settings, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """Through the API: an upload that has sent half its body keeps its slot while the (fake) clock
    stands; once the clock has moved far past ``grace + seen / floor``, its next bytes get a 408, the
    slot is free and a real upload goes through."""
    clock = FakeClock()
    paced = settings.model_copy(update={"max_large_uploads": 1, "upload_rate_grace_seconds": 300})
    app = create_app(paced, clock=clock)
    me, year = member(http), unique_year()
    body, content_type = multipart(_save_parts(me, kst(year, 3, 5), [LARGE_PNG]))
    with serve_in_thread(app, http="h11") as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            half = len(body) // 2
            conn.sendall(_large_head(me, body, content_type) + body[:half])
            wait_until(
                lambda: app.state.upload_slots.in_flight == 1, "the upload took the slot", deadline_seconds=60
            )
            clock.now += 10**6  # far past 300 s + half a body at 32 KiB/s
            conn.sendall(body[half : half + 1024])  # a trickle: a little more, far too late
            answer = _answer(conn)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"slower than 32768 bytes per second" in answer
        wait_until(
            lambda: app.state.upload_slots.in_flight == 0, "the slot was given back", deadline_seconds=60
        )
        assert feed_count(activity_deps, me.nickname) == 0
        with httpx.Client(base_url=url, timeout=60) as replica_http:
            headers = {"Content-Type": content_type, "Authorization": me.access, "email": me.email}
            assert (
                replica_http.post("/feed-service/saveFeed", content=body, headers=headers).status_code == 200
            )
    assert feed_count(activity_deps, me.nickname) == 1


def test_routes_that_take_no_token_are_not_gated_by_one(replica: Replica) -> None:
    """A body of unknown length counts as large, but getAuthorizeCode and signIn take no token: a chunked
    one reaches its route (which answers by its own rules), never the uploads' 403."""
    paths = replica.app.state.token_paths
    assert {"/feed-service/saveFeed", "/auth-service/setProfile"} <= paths
    assert (
        not {"/auth-service/signIn", "/auth-service/getAuthorizeCode", "/auth-service/reIssueToken"} & paths
    )
    body, content_type = multipart([("codeChallenge", code_challenge(code_verifier()))])

    def chunked() -> Iterator[bytes]:
        yield body

    resp = replica.http.post(
        "/auth-service/getAuthorizeCode", content=chunked(), headers={"Content-Type": content_type}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["authorizeCode"]


@pytest.mark.parametrize("path", ["/auth-service/getAuthorizeCode", "/auth-service/signIn", "/nowhere"])
def test_a_large_body_to_a_route_that_takes_no_token_is_413_before_it_is_read(
    replica: Replica, path: str
) -> None:
    """Sign-in bodies are a few hundred bytes: a declared large one is refused at once and takes no
    slot, so nobody without an account can hold the slots that uploads need."""
    body, content_type = multipart([("codeChallenge", "x" * (2 * 1024 * 1024))])
    with socket.create_connection((replica.host, replica.port), timeout=60) as conn:
        conn.sendall(_large_head(None, body, content_type, path))  # no byte of the body
        answer = _answer(conn)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert replica.in_flight == 0


def test_a_chunked_body_to_a_route_that_takes_no_token_is_cut_off_past_the_threshold(
    replica: Replica,
) -> None:
    threshold = replica.app.state.upload_slots.threshold
    body, content_type = multipart([("codeChallenge", "x" * (threshold + 1))])
    seen: list[int] = []

    def chunked() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            seen.append(replica.in_flight)
            yield body[start : start + 64 * 1024]

    resp = replica.http.post(
        "/auth-service/getAuthorizeCode", content=chunked(), headers={"Content-Type": content_type}
    )
    assert resp.status_code == 413, resp.text
    assert set(seen) == {0}  # no slot held while it came in
