"""DM limits and hygiene against the real servers (issue 13 point 5): frame size, sockets per user on one
and on two replicas, frame floods, slow receivers, client dates, SQL+Mongo atomicity, and database lock
waits that must not stall the event loop. Waits are on conditions with generous deadlines; the frame
rate runs on a fake clock."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, event, select, text
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from dm import rooms as dm_rooms
from dm.limits import FLOODING, REPLACED, TOO_BIG
from dm.messages import Party
from dm.writes import Draft, store_message
from kst.dates import from_moment, now_kst, to_moment
from storage import users
from storage.db import create_db_engine
from storage.models import DmPresence
from tests.api.test_dm_socket import Cluster, replica_cluster
from tests.dm.helpers import party
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.clock import FakeClock
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")

DEADLINE = 120.0  # a generous bound on a condition: loaded CI machines are slow


def _wait(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not reached"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_url: str) -> Iterator[Cluster]:
    """Two API replica processes sharing a broker of their own (as in ``test_dm_socket``)."""
    yield from replica_cluster(settings, tmp_path_factory.mktemp("dm-limit-replicas"))


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def limited(settings: Settings, clock: FakeClock, api_url: str) -> Iterator[str]:
    """``host:port`` of a replica of its own: 3 frames at once, then one a second on the fake clock, a
    socket closed after 2 refusals; sends never time out (only the send queue's bound closes a slow
    socket); and no revocation view, so every authentication asks the database."""
    limits = {
        "dm_frame_rate_per_second": 1,
        "dm_frame_burst": 3,
        "dm_frame_strikes": 2,
        "dm_send_timeout_seconds": 600,
        "revocation_view_enabled": False,
    }
    app = create_app(settings.model_copy(update=limits), clock=clock)
    options = {"ws_max_size": settings.dm_max_frame_bytes, "ws_per_message_deflate": False}
    with serve_in_thread(app, http="h11", ws="websockets-sansio", **options) as url:
        yield url.removeprefix("http://")


def _member(http: httpx.Client) -> IOSClient:
    return IOSClient(http).sign_up("l" + os.urandom(4).hex())


def _socket(app: IOSClient, addr: str) -> ClientConnection:
    headers = {"Authorization": app.access, "email": app.email}
    url = f"ws://{addr}/dm-service/connect-dm?nickname={quote(app.nickname)}"
    return connect(url, additional_headers=headers, open_timeout=DEADLINE)


def _frame(sender: IOSClient, receiver: IOSClient, text: str, date: int | None = None) -> str:
    return json.dumps(
        {"sender": sender.nickname, "receiver": receiver.nickname, "date": date or now_kst(), "text": text},
        ensure_ascii=False,
    )


def _close_code(ws: ClientConnection) -> int | None:
    """The close code the server sent, once the socket is closed (frames before it are skipped)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=DEADLINE)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def _stored_texts(deps: ActivityDeps, a: IOSClient, b: IOSClient) -> list[str]:
    return [m.text for m in deps.messages.room_page(_user_id(deps, a), _user_id(deps, b), 10**16, 100)]


def _user_id(deps: ActivityDeps, app: IOSClient) -> int:
    with deps.engine.connect() as conn:
        found = users.id_of(conn, app.nickname)
    assert found is not None
    return found


def _presence(deps: ActivityDeps, user_id: int) -> int:
    """The user's open DM sockets on every replica, as the presence table records them."""
    with deps.engine.connect() as conn:
        counts = conn.execute(select(DmPresence.sockets).where(DmPresence.user_id == user_id)).scalars()
        return sum(counts)


def _recorded(deps: ActivityDeps, receiver: IOSClient) -> None:
    """Wait until the receiver's one socket is recorded: before that a message to it is pushed instead
    of delivered."""
    receiver_id = _user_id(deps, receiver)
    _wait(lambda: _presence(deps, receiver_id) == 1, "the receiver's socket recorded")


def _has_sockets(deps: ActivityDeps, user_id: int, count: int) -> bool:
    return _presence(deps, user_id) == count


def _answers_200(url: str) -> bool:
    return httpx.get(url).status_code == 200


# -- frame size ---------------------------------------------------------------------------------


def _padded(raw: str, size: int) -> str:
    """``raw`` (a JSON object) with whitespace after its ``{`` so that it is exactly ``size`` bytes."""
    pad = size - len(raw.encode())
    assert pad >= 0
    return "{" + " " * pad + raw[1:]


@pytest.mark.parametrize("where", ["uvicorn's ws_max_size", "the app's own check"])
def test_a_frame_over_16_kib_is_refused_with_1009_and_not_stored(
    where: str, http: httpx.Client, api_url: str, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    # The session's API runs uvicorn with ws_max_size; the cluster's replicas with uvicorn's default
    # (16 MiB), so there the app refuses the frame itself.
    addr = urlsplit(api_url).netloc if where.startswith("uvicorn") else cluster.a
    limit = Settings(env="test").dm_max_frame_bytes
    assert limit == 16 * 1024
    me, you = _member(http), _member(http)
    with _socket(me, addr) as ws, _socket(you, addr) as inbox:
        _recorded(activity_deps, you)
        ws.send(_padded(_frame(me, you, "exactly at the limit"), limit))
        assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == "exactly at the limit"
        ws.send(_padded(_frame(me, you, "one byte over"), limit + 1))
        assert _close_code(ws) == TOO_BIG[0]
    assert _stored_texts(activity_deps, me, you) == ["exactly at the limit"]


# -- sockets per user ---------------------------------------------------------------------------


def test_a_sixth_socket_closes_the_oldest_on_the_same_replica(http: httpx.Client, cluster: Cluster) -> None:
    me, friend = _member(http), _member(http)
    assert Settings(env="test").dm_max_sockets_per_user == 5
    with ExitStack() as stack:
        sockets = [stack.enter_context(_socket(me, cluster.a)) for _ in range(6)]
        assert _close_code(sockets[0]) == REPLACED[0]
        ws = stack.enter_context(_socket(friend, cluster.a))
        ws.send(_frame(friend, me, "to every open socket"))
        for open_one in sockets[1:]:  # the five newest stay open and all receive
            assert json.loads(open_one.recv(timeout=DEADLINE))["text"] == "to every open socket"


def test_a_sixth_socket_on_another_replica_closes_the_oldest_there(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, friend = _member(http), _member(http)
    me_id = _user_id(activity_deps, me)
    with ExitStack() as stack:
        oldest = stack.enter_context(_socket(me, cluster.a))
        _wait(lambda: _presence(activity_deps, me_id) == 1, "the first socket recorded")
        sockets = []
        for count in range(2, 6):
            sockets.append(stack.enter_context(_socket(me, cluster.b)))
            _wait(partial(_has_sockets, activity_deps, me_id, count), f"{count} sockets recorded")
        sockets.append(stack.enter_context(_socket(me, cluster.b)))  # the sixth, not where the oldest is
        assert _close_code(oldest) == REPLACED[0]
        _wait(lambda: _presence(activity_deps, me_id) == 5, "five sockets left")
        ws = stack.enter_context(_socket(friend, cluster.b))
        ws.send(_frame(friend, me, "still five"))
        for open_one in sockets:
            assert json.loads(open_one.recv(timeout=DEADLINE))["text"] == "still five"


# -- frame rate ---------------------------------------------------------------------------------


def test_a_frame_flood_gets_error_frames_then_the_socket_is_closed(
    http: httpx.Client, limited: str, activity_deps: ActivityDeps
) -> None:
    me, you = _member(http), _member(http)
    with _socket(me, limited) as ws, _socket(you, limited) as inbox:
        for i in range(10):  # the fake clock stands still: 3 are taken, 2 refused, then the close
            ws.send(_frame(me, you, f"flood {i}"))
        answers = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                answers.append(json.loads(ws.recv(timeout=DEADLINE)))
        assert closed.value.rcvd is not None and closed.value.rcvd.code == FLOODING[0]
        assert [a["error"] for a in answers] == ["too many frames: at most 1 a second"] * 2
        assert [json.loads(inbox.recv(timeout=DEADLINE))["text"] for _ in range(3)] == [
            "flood 0",
            "flood 1",
            "flood 2",
        ]
    assert _stored_texts(activity_deps, me, you) == ["flood 0", "flood 1", "flood 2"]


# -- slow receivers -----------------------------------------------------------------------------


def _silent_socket(app: IOSClient, addr: str) -> socket.socket:
    """A DM socket whose client never reads: a tiny receive buffer and segment size, the upgrade
    done by hand, and nothing read after it."""
    host, port = addr.split(":")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    raw.settimeout(DEADLINE)
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /dm-service/connect-dm?nickname={quote(app.nickname)} HTTP/1.1\r\nHost: {addr}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {key}\r\nAuthorization: {app.access}\r\nemail: {app.email}\r\n\r\n"
    )
    raw.sendall(request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += raw.recv(1)  # byte by byte: nothing after the handshake is read
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return raw


def test_a_receiver_that_does_not_read_holds_up_no_one_and_is_closed(
    http: httpx.Client, limited: str, clock: FakeClock, activity_deps: ActivityDeps
) -> None:
    sender, slow, fast = _member(http), _member(http), _member(http)
    slow_id = _user_id(activity_deps, slow)
    silent = _silent_socket(slow, limited)
    long_text = "느린 수신자에게 " * 200
    try:
        _wait(lambda: _presence(activity_deps, slow_id) == 1, "the silent socket recorded")
        with _socket(sender, limited) as ws, _socket(fast, limited) as inbox:
            sent = 0
            while _presence(activity_deps, slow_id) == 1:
                assert sent < 3000, "the silent socket was never closed"
                clock.now += 10  # the fake clock: the frame rate never refuses these
                ws.send(_frame(sender, slow, long_text[:2000]))
                ws.send(_frame(sender, fast, f"fast {sent}"))
                # Each message to the other receiver arrives while the silent one is stuck: it never
                # waits for that socket (whose send timeout here is ten minutes).
                assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == f"fast {sent}"
                sent += 1
            clock.now += 10
            ws.send(_frame(sender, fast, "after the close"))
            assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == "after the close"
    finally:
        silent.close()


# -- client dates -------------------------------------------------------------------------------


def test_far_future_and_far_past_dates_are_replaced_by_the_server_time(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, you, other = _member(http), _member(http), _member(http)
    # Two seconds ago (by the clock, not by the digits: 16-digit dates do not subtract), within ±5
    # minutes, so kept as sent.
    recent = from_moment(to_moment(now_kst()) - timedelta(seconds=2))
    with _socket(me, cluster.a) as ws, _socket(you, cluster.a) as inbox:
        _recorded(activity_deps, you)
        before = now_kst()
        ws.send(_frame(me, you, "from the year 9999", 9999123123595999))
        ws.send(_frame(me, you, "from the year 2000", 2000010100000000))
        got = [json.loads(inbox.recv(timeout=DEADLINE)) for _ in range(2)]
        after = now_kst()
        assert [m["text"] for m in got] == ["from the year 9999", "from the year 2000"]
        assert all(before <= m["date"] <= after for m in got), got
        ws.send(_frame(me, you, "just now", recent))
        assert json.loads(inbox.recv(timeout=DEADLINE))["date"] == recent
    stored = activity_deps.messages.room_page(
        _user_id(activity_deps, me), _user_id(activity_deps, you), 10**16, 10
    )
    assert sorted(m.date for m in stored) == sorted([recent, *(m["date"] for m in got)])
    # A later message in another room comes first in the room list: no room is pinned at the top.
    with _socket(other, cluster.a) as ws:
        ws.send(_frame(other, you, "later"))
        _wait(lambda: _stored_texts(activity_deps, other, you) == ["later"], "the later message stored")
    rooms = you.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", you.nickname)])
    assert [m["text"] for m in rooms.json()] == ["later", "from the year 2000"]


# -- SQL and Mongo: both or neither ---------------------------------------------------------------


def _running(conn: Any, statement: str) -> list[int]:
    """Connection ids on this test database (other than ``conn``) running a statement ``LIKE`` the
    pattern: while the test holds the lock that statement needs, running means waiting for it.
    (MariaDB lists a transaction that has only read so far in no ``INNODB_TRX`` lock wait.)"""
    rows = conn.execute(
        text(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND ID <> CONNECTION_ID() AND COMMAND = 'Query' AND INFO LIKE :statement"
        ),
        {"statement": statement},
    )
    return [int(r[0]) for r in rows]


@pytest.fixture
def locker(settings: Settings) -> Iterator[Engine]:
    """An engine of the test's own for holding locks the API then waits for."""
    engine = create_db_engine(settings.sqlalchemy_url, pool_size=2)
    yield engine
    engine.dispose()


def test_a_failing_sql_write_leaves_no_mongo_document(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps, locker: Engine
) -> None:
    me, you = _member(http), _member(http)
    low, high = sorted((_user_id(activity_deps, me), _user_id(activity_deps, you)))
    with _socket(me, cluster.a) as ws, _socket(you, cluster.a) as inbox:
        _recorded(activity_deps, you)
        ws.send(_frame(me, you, "first"))
        assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == "first"
        with locker.connect() as holder, locker.connect() as watcher:
            locked = holder.execute(
                text("SELECT last_text FROM dm_rooms WHERE user_low = :l AND user_high = :h FOR UPDATE"),
                {"l": low, "h": high},
            ).all()
            assert [r[0] for r in locked] == ["first"]
            ws.send(_frame(me, you, "never half stored"))
            waiting = (
                "%INSERT INTO dm_rooms%"  # the one statement of an accepted message (dm.rooms.record_checked)
            )
            _wait(lambda: _running(watcher, waiting), "the API waiting for the room row")
            watcher.exec_driver_sql(f"KILL QUERY {_running(watcher, waiting)[0]}")  # the SQL side fails
            answer = json.loads(ws.recv(timeout=DEADLINE))
            assert answer["error"] == "the message could not be stored; try again"
            holder.rollback()
        ws.send(_frame(me, you, "after"))
        assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == "after"
    assert _stored_texts(activity_deps, me, you) == ["first", "after"]
    rooms = me.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", me.nickname)])
    assert [m["text"] for m in rooms.json()] == ["after"]


def test_a_failed_commit_deletes_the_mongo_document_again(
    http: httpx.Client, activity_deps: ActivityDeps, locker: Engine
) -> None:
    me, you = _member(http), _member(http)
    me_id, you_id = _user_id(activity_deps, me), _user_id(activity_deps, you)
    draft = Draft(os.urandom(12).hex(), now_kst(), "lost commit")
    parties = (Party(me_id, me.nickname), Party(you_id, you.nickname))

    def fail(_conn: Any) -> None:
        raise RuntimeError("the commit did not happen")

    event.listen(locker, "commit", fail)
    with pytest.raises(RuntimeError, match="commit did not happen"):
        store_message(
            locker,
            activity_deps.messages,
            draft,
            lambda conn: (parties, None),
        )
    event.remove(locker, "commit", fail)
    assert activity_deps.messages.by_id(draft.id) is None
    with activity_deps.engine.connect() as conn:
        assert dm_rooms.latest_date(conn, me_id, you_id) is None


def test_a_message_whose_sql_side_never_committed_is_not_in_the_history(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, you = _member(http), _member(http)
    with _socket(me, cluster.a) as ws, _socket(you, cluster.a) as inbox:
        _recorded(activity_deps, you)
        ws.send(_frame(me, you, "committed"))
        committed = json.loads(inbox.recv(timeout=DEADLINE))
    # What a replica that died between the Mongo insert and the SQL commit leaves behind.
    me_side, you_side = party(activity_deps, me.nickname), party(activity_deps, you.nickname)
    activity_deps.messages.insert(me_side, you_side, committed["date"] + 100, "orphan")
    history = me.post_multipart(
        "/dm-service/findDirectMessage",
        [("sender", me.nickname), ("receiver", you.nickname), ("timeBoundary", str(10**16 - 1))],
    )
    rooms = you.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", you.nickname)])
    assert [m["text"] for m in history.json()] == ["committed"]
    assert [m["text"] for m in rooms.json()] == ["committed"]  # the two agree
    stranger, other = _member(http), _member(http)  # a room whose very first message never committed
    activity_deps.messages.insert(
        party(activity_deps, stranger.nickname), party(activity_deps, other.nickname), now_kst(), "orphan"
    )
    history = stranger.post_multipart(
        "/dm-service/findDirectMessage",
        [("sender", stranger.nickname), ("receiver", other.nickname), ("timeBoundary", str(10**16 - 1))],
    )
    assert history.status_code == 200 and history.json() == []


# -- blocking database calls stay off the event loop -----------------------------------------------


def _ws_handshake(app: IOSClient, addr: str) -> int:
    with _socket(app, addr):
        return 101


def _on(addr: str, app: IOSClient, path: str, fields: list[tuple[str, str]]) -> int:
    """The status of a multipart POST by ``app`` to the replica at ``addr``."""
    with httpx.Client(base_url=f"http://{addr}", timeout=120) as there:
        return dataclasses.replace(app, http=there).post_multipart(path, fields).status_code


#: The lock the test holds, the statement that then waits for it, and the request that runs it: the
#: socket's authentication asks the database (this replica has no revocation view), signOut updates
#: the login row, setProfile and resign lock the user row.
CASES: dict[str, tuple[str, str, Callable[[IOSClient, str], int]]] = {
    "connect-dm": ("LOCK TABLES login_sessions WRITE", "%FROM login_sessions%", _ws_handshake),
    "signOut": (
        "SELECT id FROM login_sessions WHERE user_id = :uid FOR UPDATE",
        "UPDATE login_sessions%",
        lambda app, addr: _on(addr, app, "/auth-service/signOut", []),
    ),
    "setProfile": (
        "SELECT id FROM users WHERE id = :uid FOR UPDATE",
        "%FROM users%FOR UPDATE%",
        lambda app, addr: _on(
            addr, app, "/auth-service/setProfile", [("email", app.email), ("nickname", app.nickname)]
        ),
    ),
    "resign": (
        "SELECT id FROM users WHERE id = :uid FOR UPDATE",
        "%FROM users%FOR UPDATE%",
        lambda app, addr: _on(addr, app, "/auth-service/resign", [("email", app.email)]),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_request_waiting_for_a_database_lock_does_not_stall_the_event_loop(
    case: str, http: httpx.Client, limited: str, activity_deps: ActivityDeps, locker: Engine
) -> None:
    statement, waiting, request = CASES[case]
    app = _member(http)
    table_lock = statement.startswith("LOCK TABLES")
    with locker.connect() as holder, locker.connect() as watcher, ThreadPoolExecutor(1) as pool:
        if table_lock:
            holder = holder.execution_options(isolation_level="AUTOCOMMIT")
        holder.execute(text(statement), {"uid": _user_id(activity_deps, app)})
        try:
            pending = pool.submit(request, app, limited)
            _wait(lambda: _running(watcher, waiting), f"{case} waiting for the lock")
            # The replica still answers another request while that one waits for the database.
            assert httpx.get(f"http://{limited}/healthz", timeout=DEADLINE).status_code == 200
            assert not pending.done()
        finally:
            if table_lock:
                holder.exec_driver_sql("UNLOCK TABLES")
            else:
                holder.rollback()
        assert pending.result(timeout=120) in (101, 200)
