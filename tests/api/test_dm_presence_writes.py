"""A replica's presence rows say its real socket counts: the writes of one user never overlap, so two
sockets closing together leave the row at the count after both; a presence write that fails costs the
socket nothing, is written again on the next heartbeat, and a socket whose set-up failed is forgotten
when it closes (an in-process API on the test database; the writes are observed by wrapping
``dm.presence.set_sockets``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select
from sqlalchemy.exc import OperationalError

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from dm import presence
from dm.hub import DirectMessageHub
from storage.models import DmPresence
from tests.api.feed_helpers import user_id
from tests.api.test_dm_socket import _frame, _member, _socket
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.usefixtures("worker")

DEADLINE = 120.0  # a generous bound on a condition, never a timing


def _row(deps: ActivityDeps, replica_id: str, user_id: int) -> int | None:
    with deps.engine.connect() as conn:
        query = select(DmPresence.sockets).where(
            DmPresence.replica_id == replica_id, DmPresence.user_id == user_id
        )
        return conn.execute(query).scalar_one_or_none()


class Writes:
    """Wraps ``presence.set_sockets``: counts the writes of one user in flight at once (the most seen),
    holds each write of ``slow_count`` until ``release`` is set, and fails the next ``failures``."""

    def __init__(self, user_id: int, slow_count: int | None = None) -> None:
        self.user_id, self.slow_count = user_id, slow_count
        self.release = threading.Event()
        self.failures = 0
        self.in_flight = self.most = self.done = 0
        self._lock = threading.Lock()
        self._real = presence.set_sockets

    def __call__(self, conn: Connection, replica_id: str, user_id: int, sockets: int) -> None:
        if user_id != self.user_id:
            return self._real(conn, replica_id, user_id, sockets)
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            failing = self.failures > 0
            self.failures -= failing
        try:
            if failing:
                raise OperationalError("UPDATE dm_presence", {}, Exception(1205, "Lock wait timeout"))
            if sockets == self.slow_count:
                self.release.wait(DEADLINE)
            self._real(conn, replica_id, user_id, sockets)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.done += 1


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[DirectMessageHub, str]]:
    """An in-process API (its hub, its ``host:port``) with a one-second presence heartbeat."""
    app = create_app(settings.model_copy(update={"dm_heartbeat_seconds": 1.0}))
    with serve_in_thread(app, http="h11") as url:
        yield app.state.dm_hub, url.removeprefix("http://")


def test_two_sockets_closing_together_leave_the_count_after_both(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    served: tuple[DirectMessageHub, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, addr = served
    alice = _member(http)
    alice_id = user_id(activity_deps, alice.nickname)
    with _socket(alice, addr) as first, _socket(alice, addr) as second:
        wait_until(
            lambda: _row(activity_deps, hub.replica_id, alice_id) == 2,
            "both sockets recorded",
            deadline_seconds=DEADLINE,
        )
        # The write of "1 socket" (after the first close) is held until the second socket has closed
        # too: written in parallel, it would land after the write of 0 and stay.
        writes = Writes(alice_id, slow_count=1)
        monkeypatch.setattr(presence, "set_sockets", writes)
        first.close()
        wait_until(
            lambda: writes.in_flight == 1,
            "the write after the first close started",
            deadline_seconds=DEADLINE,
        )
        second.close()
        wait_until(
            lambda: len(hub._sockets.get(alice_id, ())) == 0,
            "both sockets forgotten",
            deadline_seconds=DEADLINE,
        )
        writes.release.set()
    wait_until(
        lambda: _row(activity_deps, hub.replica_id, alice_id) is None,
        "the row at 0 sockets",
        deadline_seconds=DEADLINE,
    )
    assert writes.most == 1  # never two writes of one user at once
    wait_until(lambda: not hub.presence_rows.writing(alice_id), "the writer done", deadline_seconds=DEADLINE)
    assert _row(activity_deps, hub.replica_id, alice_id) is None


def test_a_failed_presence_write_costs_the_socket_nothing_and_is_written_again(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    served: tuple[DirectMessageHub, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, addr = served
    alice, bob = _member(http), _member(http)
    alice_id = user_id(activity_deps, alice.nickname)
    writes = Writes(alice_id)
    writes.failures = 1  # the write of the socket's set-up
    monkeypatch.setattr(presence, "set_sockets", writes)
    with _socket(bob, addr) as bob_ws, _socket(alice, addr) as alice_ws:
        # The socket works although its presence was not written, and the next heartbeat writes it.
        wait_until(
            lambda: _row(activity_deps, hub.replica_id, alice_id) == 1,
            "the count written again",
            deadline_seconds=DEADLINE,
        )
        assert writes.done >= 2
        alice_ws.send(_frame(alice, bob, "after a failed presence write"))
        assert json.loads(bob_ws.recv(timeout=DEADLINE))["text"] == "after a failed presence write"
        bob_ws.send(_frame(bob, alice, "and back"))
        assert json.loads(alice_ws.recv(timeout=DEADLINE))["text"] == "and back"
    wait_until(
        lambda: _row(activity_deps, hub.replica_id, alice_id) is None,
        "the row gone after the close",
        deadline_seconds=DEADLINE,
    )
    wait_until(lambda: alice_id not in hub._sockets, "the socket forgotten", deadline_seconds=DEADLINE)


def test_a_socket_whose_set_up_failed_is_forgotten_when_it_closes(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    served: tuple[DirectMessageHub, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub, addr = served
    alice = _member(http)
    alice_id = user_id(activity_deps, alice.nickname)
    attach = hub.attach

    async def failing_attach(user_id: int, sock: Any, nickname: str | None = None) -> None:
        await attach(user_id, sock, nickname)
        if user_id == alice_id:
            raise OperationalError("SELECT dm_presence", {}, Exception(2013, "Lost connection"))

    monkeypatch.setattr(hub, "attach", failing_attach)
    with _socket(alice, addr) as ws:
        wait_until(lambda: alice_id in hub._sockets, "the socket registered", deadline_seconds=DEADLINE)
        ws.close()
    # Registered before the failure, it is detached all the same: nothing is delivered to it any more.
    wait_until(lambda: alice_id not in hub._sockets, "the socket forgotten", deadline_seconds=DEADLINE)
    wait_until(
        lambda: _row(activity_deps, hub.replica_id, alice_id) is None,
        "no presence row left",
        deadline_seconds=DEADLINE,
    )
