"""The lean DM path: an accepted message costs one SQL statement (the checked room-row upsert), and the
replica's nickname hints and presence view never outlive a rename, a block or a resign made on another
replica."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, select

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from emulators.control import FcmEmulator
from storage.models import User
from tests.api.test_dm_socket import Cluster, _frame, _member, _silent, _socket, _wait, replica_cluster
from tests.dm.helpers import room_page
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")
DEADLINE = 60


@pytest.fixture(scope="module")
def quiet_replica(settings: Settings) -> Iterator[tuple[str, Engine, Any]]:
    """An API replica in this process whose periodic database work (presence heartbeat, revocation
    poll, outbox poll) waits an hour, so every statement on its engine during a test is the test's."""
    quiet = settings.model_copy(
        update={
            "dm_heartbeat_seconds": 3600,
            "revocation_reconcile_seconds": 3600,
            "outbox_poll_seconds": 3600,
        }
    )
    app = create_app(quiet)
    with serve_in_thread(app, http="h11", ws="websockets-sansio", ws_per_message_deflate=False) as url:
        res = app.state.resources
        yield url.removeprefix("http://"), res.engine, res.revocations


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_url: str) -> Iterator[Cluster]:
    """Two API replica processes sharing a broker of their own (as in ``test_dm_socket``)."""
    yield from replica_cluster(settings, tmp_path_factory.mktemp("dm-lean-replicas"))


def test_an_accepted_message_costs_one_sql_statement(
    http: httpx.Client, quiet_replica: tuple[str, Engine, Any], activity_deps: ActivityDeps
) -> None:
    addr, engine, revocations = quiet_replica
    me, you = _member(http), _member(http)
    n, sent = 20, ["warm-up"]
    with _socket(me, addr) as ws, _socket(you, addr) as inbox:
        ws.send(_frame(me, you, "warm-up"))  # the first message looks the receiver up
        assert json.loads(inbox.recv(timeout=DEADLINE))["text"] == "warm-up"
        # A round counts only while the replica's revocation view stays live: when its broker feed
        # lags (a loaded machine), each frame's login is rightly checked in the database instead.
        for round_ in range(5):
            statements: list[str] = []

            def count(
                _conn: Any, _cursor: Any, statement: str, *_args: Any, into: list[str] = statements
            ) -> None:
                into.append(statement)

            _wait(lambda: revocations.live, DEADLINE)
            texts = [f"r{round_}m{i}" for i in range(n)]
            event.listen(engine, "before_cursor_execute", count)
            try:
                for text in texts:
                    ws.send(_frame(me, you, text))
                assert [json.loads(inbox.recv(timeout=DEADLINE))["text"] for _ in range(n)] == texts
            finally:
                event.remove(engine, "before_cursor_execute", count)
            sent += texts
            if revocations.live:
                break
        else:
            raise AssertionError("the revocation view never stayed live for a round")
    # The sockets' own presence rows (written as a socket's set-up ends, which may fall in the round)
    # are not the messages' path.
    statements = [s for s in statements if "dm_presence" not in s]
    rooms = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO DM_ROOMS")]
    assert len(rooms) == n and len(statements) == n, [s for s in statements if s not in rooms]
    assert [m["text"] for m in room_page(activity_deps, me.nickname, you.nickname, limit=200)] == sent


def _via(app: IOSClient, addr: str) -> IOSClient:
    """The same app talking to replica ``addr``."""
    return dataclasses.replace(app, http=httpx.Client(base_url=f"http://{addr}", timeout=30))


def _rename(app: IOSClient, nickname: str) -> None:
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nickname)])
    assert resp.status_code == 200, resp.text
    app.nickname = nickname


def _delivered(tx: Any, rx: Any, frame: str) -> None:
    tx.send(frame)
    assert json.loads(rx.recv(timeout=DEADLINE))["text"] == json.loads(frame)["text"]


def _error(ws: Any) -> str:
    return str(json.loads(ws.recv(timeout=DEADLINE))["error"])


def test_a_rename_on_one_replica_redirects_the_old_nickname_on_the_other(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    old = alice.nickname
    with _socket(alice, cluster.b) as a, _socket(bob, cluster.b) as b:
        _delivered(b, a, _frame(bob, alice, "to alice"))
        renamed = "n" + old[1:]
        _rename(_via(alice, cluster.a), renamed)  # on replica A: no broadcast reaches B for this
        with _socket(carol, cluster.b) as c:
            _rename(_via(carol, cluster.a), old)  # the freed nickname has a new owner
            b.send(json.dumps({"sender": bob.nickname, "receiver": old, "text": "to whoever is " + old}))
            got = json.loads(c.recv(timeout=DEADLINE))
            assert got["text"] == "to whoever is " + old and got["receiver"] == old
            assert _silent(a)  # the previous owner gets nothing
    assert [m["text"] for m in room_page(activity_deps, bob.nickname, old)] == ["to whoever is " + old]
    assert [m["text"] for m in room_page(activity_deps, bob.nickname, renamed)] == ["to alice"]


def test_a_block_on_one_replica_refuses_the_next_message_on_the_other(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, you = _member(http), _member(http)
    with _socket(me, cluster.b) as ws, _socket(you, cluster.b) as inbox:
        _delivered(ws, inbox, _frame(me, you, "before the block"))
        resp = _via(you, cluster.a).post_multipart(
            "/auth-service/block", [("srcNickname", you.nickname), ("dstNickname", me.nickname)]
        )
        assert resp.status_code == 200, resp.text
        ws.send(_frame(me, you, "after the block"))
        assert "does not accept" in _error(ws)
        assert _silent(inbox)
    assert [m["text"] for m in room_page(activity_deps, me.nickname, you.nickname)] == ["before the block"]


def test_a_resign_on_one_replica_ends_messages_to_and_from_it_on_the_other(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, gone = _member(http), _member(http)
    with _socket(me, cluster.b) as ws, _socket(gone, cluster.b) as theirs:
        _delivered(ws, theirs, _frame(me, gone, "before the resign"))
        resp = _via(gone, cluster.a).post_multipart("/auth-service/resign", [("email", gone.email)])
        assert resp.status_code == 200, resp.text
        with pytest.raises(Exception):  # noqa: B017 - closed with 4401, however the client surfaces it
            theirs.recv(timeout=DEADLINE)
        assert theirs.close_code == 4401

        def deleted() -> bool:
            with activity_deps.engine.connect() as conn:
                return conn.scalar(select(User.id).where(User.nickname == gone.nickname)) is None

        _wait(deleted, 60)  # the resign workflow removed the account
        ws.send(_frame(me, gone, "after the resign"))
        assert "no user" in _error(ws)
    messages = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert messages.count_documents({"text": "after the resign"}) == 0


def test_presence_learnt_from_the_other_replica_routes_across_and_forgets_a_closed_socket(
    http: httpx.Client, cluster: Cluster, fcm_emulator: FcmEmulator
) -> None:
    alice, bob = _member(http), _member(http)
    with _socket(bob, cluster.a) as b:
        with _socket(alice, cluster.b) as far:
            _until(lambda i: _arrives(b, far, _frame(bob, alice, f"across {i}")), "no frame crossed to B")
        # Alice has no socket left: once replica A knows (her replica's broadcast, else A's next reload
        # of dm_presence), a message to her is pushed instead of relayed to nobody.
        _until(
            lambda i: _sent_then(b, _frame(bob, alice, f"pushed {i}"), fcm_emulator, alice), "never pushed"
        )


def _arrives(tx: Any, rx: Any, frame: str) -> bool:
    tx.send(frame)
    try:
        return json.loads(rx.recv(timeout=2))["text"] == json.loads(frame)["text"]
    except TimeoutError:
        return False


def _sent_then(tx: Any, frame: str, fcm: FcmEmulator, to: IOSClient) -> bool:
    tx.send(frame)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if fcm.messages(to.device_token):
            return True
        time.sleep(0.1)
    return False


def _until(attempt: Any, why: str) -> None:
    for i in range(DEADLINE // 2):
        if attempt(i):
            return
    raise AssertionError(why)


def test_a_burst_from_many_sockets_arrives_once_and_in_each_senders_order(
    http: httpx.Client, quiet_replica: tuple[str, Engine, Any], activity_deps: ActivityDeps
) -> None:
    """Frames sent without waiting, from several sockets at once, are stored in shared transactions
    (``dm.writes``): each still gets its own room row, each receiver gets each frame once, every
    sender's frames keep their order at the receiver and in the history."""
    addr, engine, _ = quiet_replica
    senders = [_member(http) for _ in range(6)]
    own = [_member(http) for _ in senders]
    shared = _member(http)
    per_sender = 12
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DM_ROOMS"):
            statements.append(statement)

    def text(s: int, i: int) -> str:
        return f"s{s} m{i}"

    with contextlib.ExitStack() as stack:
        tx = [stack.enter_context(_socket(app, addr)) for app in senders]
        rx = [stack.enter_context(_socket(app, addr)) for app in own]
        inbox = stack.enter_context(_socket(shared, addr))
        for s, sender in enumerate(senders):  # each receiver once, so the hints are learnt
            tx[s].send(_frame(sender, own[s], "warm-up"))
            assert json.loads(rx[s].recv(timeout=DEADLINE))["text"] == "warm-up"
        event.listen(engine, "before_cursor_execute", count)
        try:
            for i in range(per_sender):
                for s, sender in enumerate(senders):
                    to = own[s] if i % 2 == 0 else shared
                    tx[s].send(_frame(sender, to, text(s, i)))
            got_own = [
                [json.loads(rx[s].recv(timeout=DEADLINE))["text"] for _ in range(per_sender // 2)]
                for s in range(len(senders))
            ]
            got_shared = [
                json.loads(inbox.recv(timeout=DEADLINE)) for _ in range(len(senders) * per_sender // 2)
            ]
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert all(_silent(ws, 0.5) for ws in [*rx, inbox])  # nothing twice
    assert len(statements) == len(senders) * per_sender  # one room statement per message
    for s, sender in enumerate(senders):
        mine = [text(s, i) for i in range(0, per_sender, 2)]
        assert got_own[s] == mine
        assert [m["text"] for m in room_page(activity_deps, sender.nickname, own[s].nickname)] == [
            "warm-up",
            *mine,
        ]
        to_shared = [text(s, i) for i in range(1, per_sender, 2)]
        assert [f["text"] for f in got_shared if f["sender"] == sender.nickname] == to_shared
        history = room_page(activity_deps, sender.nickname, shared.nickname)
        assert [m["text"] for m in history] == to_shared
