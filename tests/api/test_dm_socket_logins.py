"""DM sockets follow their login (issue 13, point 2), on two API replica processes sharing a broker:
sign-out, refresh-token reuse and resign close that login's (or user's) sockets on every replica with
``4401``, an expired access token's socket closes with ``4403``, other logins and users keep theirs, and
nothing a revoked login sends once its revocation reached the replica is stored or delivered."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from prometheus_client import REGISTRY
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from devstack.processes import free_port
from dm.hub import DirectMessageHub
from storage import logins
from tests.api.dm_helpers import HEARTBEAT_SECONDS, wait_until_seen
from tests.api.test_dm_socket import Cluster, _frame, _member, _socket, _wait, replica_cluster
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.logins import reissue_twice

pytestmark = pytest.mark.usefixtures("worker")

REVOKED, EXPIRED = 4401, 4403  # the close codes the README documents


FRAME_WAIT = 60  # seconds an expected frame may take on a loaded machine (a condition, not a timing)


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_url: str) -> Iterator[Cluster]:
    """Two replicas on a private broker that never poll the revocations table during the tests: what
    closes a socket on the other replica came through the broker."""
    yield from replica_cluster(
        settings,
        tmp_path_factory.mktemp("dm-logins"),
        revocation_reconcile_seconds=3600,
        dm_heartbeat_seconds=HEARTBEAT_SECONDS,
    )


def _on(app: IOSClient, base_url: str) -> IOSClient:
    """The same installed app talking to another replica (same tokens)."""
    url = base_url if base_url.startswith("http") else f"http://{base_url}"
    return dataclasses.replace(app, http=httpx.Client(base_url=url, timeout=30))


def _second_login(http: httpx.Client, app: IOSClient) -> IOSClient:
    """Another device of the same account (its own login)."""
    other = IOSClient(http)
    assert other.sign_in(app.email.rsplit("+", 1)[0]).status_code == 200
    other.nickname = app.nickname
    assert _sid(other) != _sid(app)
    return other


def _claim(app: IOSClient, name: str) -> Any:
    return jwt.decode(app.access.removeprefix("Bearer "), options={"verify_signature": False})[name]


def _sid(app: IOSClient) -> str:
    return str(_claim(app, "sid"))


def _closed_with(ws: ClientConnection, timeout: float = 30) -> tuple[int, str]:
    """Wait (generously) for the server to close ``ws``; its close code and reason (frames before the
    close are skipped)."""
    try:
        while True:
            ws.recv(timeout=timeout)
    except TimeoutError:
        raise AssertionError("the socket stayed open") from None
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason


def _receives(sender_ws: ClientConnection, sender: IOSClient, inbox: ClientConnection, to: IOSClient) -> None:
    """``inbox`` (still open) gets the next message ``sender`` sends ``to``, and that is its next frame."""
    text = f"still open {uuid.uuid4().hex[:6]}"
    sender_ws.send(_frame(sender, to, text))
    assert json.loads(inbox.recv(timeout=FRAME_WAIT))["text"] == text


def _history(app: IOSClient, other: IOSClient) -> list[str]:
    """The stored conversation of ``app`` with ``other`` (findDirectMessage), oldest first."""
    parts = [("sender", app.nickname), ("receiver", other.nickname), ("timeBoundary", str(10**16))]
    resp = app.post_multipart("/dm-service/findDirectMessage", parts)
    assert resp.status_code == 200, resp.text
    return [m["text"] for m in resp.json()]


def _room_texts(app: IOSClient) -> list[str]:
    """The last text of each of ``app``'s rooms (findMultipleDirectMessage)."""
    resp = app.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", app.nickname)])
    assert resp.status_code == 200, resp.text
    return [m["text"] for m in resp.json()]


def test_sign_out_closes_that_login_on_the_other_replica_only(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    tablet = _second_login(http, alice)
    with (
        _socket(alice, cluster.b) as phone_b,
        _socket(tablet, cluster.a) as tablet_a,
        _socket(tablet, cluster.b) as tablet_b,
        _socket(bob, cluster.b) as bob_b,
        _socket(carol, cluster.a) as carol_a,
    ):
        wait_until_seen(activity_deps, alice, tablet, tablet, bob, carol)
        assert _on(alice, cluster.a).post_multipart("/auth-service/signOut", []).status_code == 200
        assert _closed_with(phone_b) == (REVOKED, "login revoked")
        # The same user's other login, and another user, keep their sockets on both replicas.
        _receives(carol_a, carol, bob_b, bob)
        carol_a.send(_frame(carol, alice, "to the tablet"))
        assert json.loads(tablet_a.recv(timeout=FRAME_WAIT))["text"] == "to the tablet"
        assert json.loads(tablet_b.recv(timeout=FRAME_WAIT))["text"] == "to the tablet"
        _receives(tablet_b, tablet, carol_a, carol)


def test_resign_closes_every_socket_of_the_user_on_both_replicas(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    tablet = _second_login(http, alice)
    with (
        _socket(alice, cluster.a) as phone_a,
        _socket(alice, cluster.b) as phone_b,
        _socket(tablet, cluster.a) as tablet_a,
        _socket(tablet, cluster.b) as tablet_b,
        _socket(bob, cluster.b) as bob_b,
        _socket(carol, cluster.a) as carol_a,
    ):
        wait_until_seen(activity_deps, alice, alice, tablet, tablet, bob, carol)
        resp = _on(alice, cluster.a).post_multipart("/auth-service/resign", [("email", alice.email)])
        assert resp.status_code == 200, resp.text
        for ws in (phone_a, phone_b, tablet_a, tablet_b):
            assert _closed_with(ws)[0] == REVOKED
        _receives(carol_a, carol, bob_b, bob)


def test_refresh_token_reuse_closes_that_login(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps, settings: Settings
) -> None:
    alice, bob = _member(http), _member(http)
    tablet = _second_login(http, alice)
    stolen = alice.refresh
    reissue_twice(activity_deps, alice, settings.refresh_reuse_grace_seconds)
    with (
        _socket(alice, cluster.b) as phone_b,
        _socket(tablet, cluster.b) as tablet_b,
        _socket(bob, cluster.a) as bob_a,
    ):
        wait_until_seen(activity_deps, alice, tablet, bob)
        thief = _on(IOSClient(http, refresh=stolen, email=alice.email), cluster.a)
        assert thief.reissue().status_code == 403  # reuse: the login is revoked on replica A
        assert _closed_with(phone_b)[0] == REVOKED
        _receives(bob_a, bob, tablet_b, tablet)


def test_a_socket_closes_when_its_access_token_expires(
    http: httpx.Client, cluster: Cluster, settings: Settings
) -> None:
    alice = _member(http)
    # A replica that issues access tokens valid for 3 s (same secret: every replica accepts them).
    short = create_app(settings.model_copy(update={"access_token_ttl_seconds": 3}))
    with serve_in_thread(short, http="h11") as url:
        issuer = _on(alice, url)
        ws: ClientConnection | None = None
        for _ in range(20):  # the token may expire before the upgrade on a slow machine: re-issue
            assert issuer.reissue().status_code == 200
            try:
                ws = _socket(issuer, cluster.b)
                break
            except InvalidStatus as refused:
                assert refused.response.status_code == 403
        assert ws is not None, "never connected with a fresh short-lived token"
        with ws:
            assert _closed_with(ws, timeout=60) == (EXPIRED, "token expired")


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("sosohappy_dm_refused_total", {"reason": reason}) or 0.0


def test_frames_a_revoked_login_sends_are_neither_stored_nor_delivered(
    http: httpx.Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    app = create_app(settings)
    with serve_in_thread(app, http="h11") as url:
        addr = url.removeprefix("http://")
        hub: DirectMessageHub = app.state.dm_hub
        handle, held, gate = hub.handle, threading.Event(), threading.Event()

        async def held_first(sender_id: int, sender: str, raw: str) -> None:
            # Alice's first frame is held after its login check, so her next frame is read from the
            # socket only after the revocation: the race of a frame sent just as she signs out.
            if sender == alice.nickname and not gate.is_set():
                held.set()
                await asyncio.to_thread(gate.wait, 60)
            await handle(sender_id, sender, raw)

        monkeypatch.setattr(hub, "handle", held_first)
        with _socket(alice, addr) as alice_ws, _socket(bob, addr) as bob_ws, _socket(carol, addr) as carol_ws:
            dropped = _refused("login_ended")
            alice_ws.send(_frame(alice, bob, "before"))
            _wait(held.is_set, 30)
            alice_ws.send(_frame(alice, bob, "queued"))  # waits in the server behind "before"
            assert _on(alice, url).post_multipart("/auth-service/signOut", []).status_code == 200
            with contextlib.suppress(ConnectionClosed):  # right after the sign-out
                alice_ws.send(_frame(alice, bob, "late"))
            gate.set()
            assert _closed_with(alice_ws) == (REVOKED, "login revoked")
            # "queued" is dropped: read and refused by the login check, or never read once the socket
            # started closing (its reader stops at once).
            assert (
                json.loads(bob_ws.recv(timeout=FRAME_WAIT))["text"] == "before"
            )  # checked before the sign-out
            _receives(carol_ws, carol, bob_ws, bob)  # bob's next frame is carol's: nothing else came
    assert _history(bob, alice) == ["before"]
    assert "before" in _room_texts(bob) and not {"queued", "late"} & set(_room_texts(bob))
    assert _refused("login_ended") - dropped <= 1


def test_the_database_answers_for_a_replica_that_has_not_heard(
    http: httpx.Client, settings: Settings
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    # No broker and no poll during the test: this replica's view is never caught up, and it cannot
    # learn of the sign-out, so the socket stays open until alice sends.
    deaf = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "revocation_reconcile_seconds": 3600}
    )
    app = create_app(deaf)
    with serve_in_thread(app, http="h11") as url:
        addr = url.removeprefix("http://")
        with _socket(alice, addr) as alice_ws, _socket(bob, addr) as bob_ws, _socket(carol, addr) as carol_ws:
            assert alice.post_multipart("/auth-service/signOut", []).status_code == 200  # elsewhere
            alice_ws.send(_frame(alice, bob, "after the sign-out"))
            assert _closed_with(alice_ws) == (REVOKED, "login revoked")
            _receives(carol_ws, carol, bob_ws, bob)
    assert _history(bob, alice) == []


def test_a_revocation_found_by_polling_closes_the_socket(
    http: httpx.Client, settings: Settings, activity_deps: ActivityDeps
) -> None:
    alice = _member(http)
    app = create_app(settings.model_copy(update={"revocation_reconcile_seconds": 0.2}))
    with serve_in_thread(app, http="h11") as url, _socket(alice, url.removeprefix("http://")) as ws:
        # A replica revoked the login and died before publishing: only the database knows.
        with activity_deps.sessions.begin() as session:
            assert logins.revoke_session(session, _sid(alice)) is not None
        assert _closed_with(ws) == (REVOKED, "login revoked")
