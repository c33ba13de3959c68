"""Direct messages belong to user ids, not nicknames (issue 13, point 1), with no worker at all: two API
replica processes whose Temporal address answers nothing, so no workflow can run for them.

A freed nickname's next owner sees nothing of the previous owner's conversations (history, room list,
socket), the other side sees the renamed user under the new nickname, and renames of two users that
trade nicknames leave every room where it was.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from websockets.sync.client import ClientConnection

from activities.deps import ActivityDeps
from config import Settings
from devstack.processes import free_port
from kst.dates import now_kst
from storage.models import NicknameChangeCounter, WorkflowOutbox
from tests.api.dm_helpers import HEARTBEAT_SECONDS, wait_until_seen
from tests.api.test_dm_socket import _env, _replica, _silent, _socket, _wait
from tests.dm.helpers import party, store_message
from tests.fixtures.ios_client import IOSClient

HISTORY = "/dm-service/findDirectMessage"
ROOMS = "/dm-service/findMultipleDirectMessage"
DATE = 2024012017042712
#: How long a frame expected on a socket may take (a deadline on a condition, generous for a loaded
#: machine: the broker hop between replicas, its fetch wait, a starved process).
DELIVERY_TIMEOUT = 60


class Workerless:
    """Two API replicas with no Temporal behind them; users signed up through the session's API use
    them with the tokens they got there."""

    def __init__(self, a: str, b: str) -> None:
        self.a, self.b = a, b

    def on(self, app: IOSClient, addr: str) -> IOSClient:
        """``app`` talking to the replica at ``addr``."""
        http = httpx.Client(base_url=f"http://{addr}", timeout=30)
        return IOSClient(http, access=app.access, email=app.email, nickname=app.nickname)


@pytest.fixture(scope="module")
def workerless(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_url: str, activity_deps: ActivityDeps
) -> Iterator[Workerless]:
    logs = tmp_path_factory.mktemp("dm-workerless")
    http = httpx.Client(base_url=api_url, timeout=30)
    env = _env(
        settings,
        temporal_address=f"127.0.0.1:{free_port()}",
        worker_metrics_port=0,
        dm_heartbeat_seconds=HEARTBEAT_SECONDS,
    )
    a, a_addr = _replica("api-no-worker-a", env, logs)
    b, b_addr = _replica("api-no-worker-b", env, logs)
    try:
        for addr in (a_addr, b_addr):
            _wait(lambda addr=addr: httpx.get(f"http://{addr}/readyz").status_code == 200, 60)
            ready = httpx.get(f"http://{addr}/readyz").json()
            assert ready == {"status": "degraded"}  # Temporal: nothing listens at its address
        replicas = Workerless(a_addr, b_addr)
        _warm_up(replicas, http, activity_deps)
        yield replicas
    finally:
        a.stop()
        b.stop()


def _warm_up(replicas: Workerless, http: httpx.Client, deps: ActivityDeps) -> None:
    """Until a frame crosses from replica A to B (each replica reads the topic from where it was when
    its consumer started), send probes; a generous deadline on the condition."""
    one, two = (IOSClient(http).sign_up(_nick("w")) for _ in range(2))
    with _socket(one, replicas.a) as sender, _socket(two, replicas.b) as inbox:
        wait_until_seen(deps, one, two)
        deadline, attempt = time.monotonic() + 120, 0
        while time.monotonic() < deadline:
            attempt += 1
            _send(sender, one.nickname, two.nickname, f"probe {attempt}")
            try:
                json.loads(inbox.recv(timeout=2))
                return
            except TimeoutError:
                continue
    raise AssertionError("no frame crossed between the replicas")


def _nick(prefix: str = "i") -> str:
    return prefix + uuid.uuid4().hex[:7]


def _rename(app: IOSClient, nickname: str) -> None:
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nickname)])
    assert resp.status_code == 200, resp.text
    app.nickname = nickname


def _history(app: IOSClient, sender: str, receiver: str) -> list[dict[str, Any]]:
    resp = app.post_multipart(
        HISTORY, [("sender", sender), ("receiver", receiver), ("timeBoundary", str(10**16))]
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def _rooms(app: IOSClient) -> list[dict[str, Any]]:
    resp = app.post_multipart(ROOMS, [("sender", app.nickname)])
    assert resp.status_code == 200, resp.text
    return resp.json()


def _send(ws: ClientConnection, sender: str, receiver: str, text: str, date: int = DATE) -> None:
    ws.send(
        json.dumps({"sender": sender, "receiver": receiver, "text": text, "date": date}, ensure_ascii=False)
    )


def _dto(sender: str, receiver: str, text: str, date: int = DATE) -> dict[str, Any]:
    return {"sender": sender, "receiver": receiver, "date": date, "text": text}


def test_a_freed_nickname_shows_its_next_owner_nothing_without_any_worker(
    http: httpx.Client, workerless: Workerless, activity_deps: ActivityDeps
) -> None:
    sent = now_kst()  # a client date the server keeps (within its tolerance)
    signed_up = [IOSClient(http).sign_up(_nick()) for _ in range(3)]
    alice, bob, carol = (
        workerless.on(signed_up[0], workerless.a),
        workerless.on(signed_up[1], workerless.b),
        workerless.on(signed_up[2], workerless.a),
    )
    old = alice.nickname
    alice_id = party(activity_deps, old).id
    # Alice (replica A) and Bob (replica B) talk.
    with _socket(alice, workerless.a) as a_ws, _socket(bob, workerless.b) as b_ws:
        wait_until_seen(activity_deps, alice, bob)
        _send(a_ws, old, bob.nickname, "비밀 1", sent)
        assert json.loads(b_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(old, bob.nickname, "비밀 1", sent)
        _send(b_ws, bob.nickname, old, "secret 2", sent + 1)
        assert json.loads(a_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(
            bob.nickname, old, "secret 2", sent + 1
        )

    # Alice renames; Carol takes her old nickname at once. No worker runs, none is needed.
    new = _nick("n")
    _rename(alice, new)
    _rename(carol, old)
    with activity_deps.sessions() as s:
        assert (
            s.scalar(
                select(func.count()).select_from(WorkflowOutbox).where(WorkflowOutbox.user_id == alice_id)
            )
            == 0
        )
        assert s.get(NicknameChangeCounter, alice_id) is None

    # Carol, under Alice's old nickname, reads nothing of Alice's conversation on either replica.
    for replica in (workerless.a, workerless.b):
        as_carol = workerless.on(carol, replica)
        assert _history(as_carol, old, bob.nickname) == []
        assert _history(as_carol, bob.nickname, old) == []
        assert _rooms(as_carol) == []
    # Bob sees Alice under her new nickname, in the history and the room list.
    expected = [_dto(new, bob.nickname, "비밀 1", sent), _dto(bob.nickname, new, "secret 2", sent + 1)]
    assert _history(bob, bob.nickname, new) == expected
    assert _history(workerless.on(alice, workerless.b), new, bob.nickname) == expected
    assert _rooms(bob) == [expected[-1]]
    assert _history(bob, bob.nickname, old) == []  # Carol has no conversation with Bob

    # Sockets: Alice's, Carol's and Bob's on both replicas. What Bob sends to Alice's new nickname reaches
    # Alice only; what he sends to the old one now reaches its owner, Carol, in a room of their own.
    with (
        _socket(alice, workerless.a) as a_ws,
        _socket(carol, workerless.a) as c_ws,
        _socket(bob, workerless.b) as b_ws,
    ):
        wait_until_seen(activity_deps, alice, carol, bob)
        _send(b_ws, bob.nickname, new, "to alice", sent)
        assert json.loads(a_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(bob.nickname, new, "to alice", sent)
        _send(a_ws, new, bob.nickname, "from alice", sent)
        assert json.loads(b_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(new, bob.nickname, "from alice", sent)
        _send(b_ws, bob.nickname, old, "to carol", sent)
        _send(b_ws, bob.nickname, new, "to alice again", sent)
        # Frames reach a socket in order (a receiver's records share a partition): each one's first frame
        # is its own.
        assert json.loads(c_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(bob.nickname, old, "to carol", sent)
        assert json.loads(a_ws.recv(timeout=DELIVERY_TIMEOUT)) == _dto(
            bob.nickname, new, "to alice again", sent
        )
        assert _silent(c_ws)
    assert _history(carol, old, bob.nickname) == [_dto(bob.nickname, old, "to carol", sent)]
    assert _rooms(carol) == [_dto(bob.nickname, old, "to carol", sent)]
    # (One date for all: messages stored by two replicas tie in any order.)
    assert sorted(m["text"] for m in _history(bob, bob.nickname, new)) == sorted(
        ["비밀 1", "secret 2", "to alice", "from alice", "to alice again"]
    )
    assert {(r["sender"], r["receiver"], r["text"]) for r in _rooms(bob)} == {
        (bob.nickname, new, "secret 2"),  # the latest by date
        (bob.nickname, old, "to carol"),
    }


def test_two_users_trading_nicknames_leave_every_room_where_it_was(
    http: httpx.Client, workerless: Workerless, activity_deps: ActivityDeps
) -> None:
    signed_up = [IOSClient(http).sign_up(_nick()) for _ in range(3)]
    ann, ben, fay = (workerless.on(app, workerless.a) for app in signed_up)
    x, y = ann.nickname, ben.nickname
    store_message(activity_deps, x, fay.nickname, DATE, "ann to fay")
    store_message(activity_deps, fay.nickname, y, DATE + 1, "fay to ben")
    store_message(activity_deps, x, y, DATE + 2, "ann to ben")

    # Ann and Ben trade nicknames, one after the other, through a third name (on both replicas).
    _rename(ann, _nick("t"))
    _rename(workerless.on(ben, workerless.b), x)
    ben.nickname = x
    _rename(ann, y)

    # Each room still holds its two users; each shows the names they hold now.
    assert _history(fay, fay.nickname, y) == [
        {"sender": y, "receiver": fay.nickname, "date": DATE, "text": "ann to fay"}
    ]
    assert _history(fay, fay.nickname, x) == [
        {"sender": fay.nickname, "receiver": x, "date": DATE + 1, "text": "fay to ben"}
    ]
    assert _history(ann, y, x) == [{"sender": y, "receiver": x, "date": DATE + 2, "text": "ann to ben"}]
    assert _rooms(fay) == [
        {"sender": fay.nickname, "receiver": x, "date": DATE + 1, "text": "fay to ben"},
        {"sender": y, "receiver": fay.nickname, "date": DATE, "text": "ann to fay"},
    ]
    assert [r["text"] for r in _rooms(ann)] == ["ann to ben", "ann to fay"]
    assert [r["text"] for r in _rooms(ben)] == ["ann to ben", "fay to ben"]
