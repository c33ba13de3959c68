"""The DM WebSocket on two API replicas (two processes) sharing a broker: handshake rules, same- and
cross-replica delivery, several devices, offline push, bad frames, and losing the broker."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from activities.deps import ActivityDeps
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from emulators.control import FcmEmulator
from kst.dates import now_kst
from storage.logins import utcnow
from tests.api.dm_helpers import wait_until_seen
from tests.api.feed_helpers import hangul_nick, look_alikes, spellings
from tests.dm.helpers import room_page
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")


FRAME_WAIT = 60  # seconds an expected frame may take on a loaded machine (a condition, not a timing)


def _env(settings: Settings, **changes: Any) -> dict[str, str]:
    values = settings.model_dump() | changes
    shown = {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in values.items()}
    return {f"SOSOHAPPY_{k.upper()}": str(v) for k, v in shown.items() if v is not None}


def _replica(name: str, env: dict[str, str], logs: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.main:app",
        "--factory",
        "--port",
        str(port),
        "--http",
        "h11",
    ]
    argv += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--no-access-log"]
    proc = ManagedProcess(name, argv, logs / f"{name}.log", env=env).start().wait_for_port(port)
    return proc, f"127.0.0.1:{port}"


class Cluster:
    """Two API replicas and the broker they share (which tests may stop and start)."""

    def __init__(self, broker: ManagedProcess, broker_port: int, a: str, b: str) -> None:
        self.broker, self.broker_port, self.a, self.b = broker, broker_port, a, b


def replica_cluster(settings: Settings, logs: Path, **overrides: Any) -> Iterator[Cluster]:
    """Two API replica processes on a private broker (settings with ``overrides``), until closed."""
    port = free_port()
    broker = ManagedProcess("kafka", broker_argv(port), logs / "kafka.log").start().wait_for_port(port)
    env = _env(settings, kafka_bootstrap=f"127.0.0.1:{port}", worker_metrics_port=0, **overrides)
    a, a_addr = _replica("api-a", env, logs)
    b, b_addr = _replica("api-b", env, logs)
    for addr in (a_addr, b_addr):
        _wait(lambda addr=addr: httpx.get(f"http://{addr}/readyz").status_code == 200, 60)
    try:
        yield Cluster(broker, port, a_addr, b_addr)
    finally:
        for proc in (a, b, broker):
            proc.stop()


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory, api_url: str) -> Iterator[Cluster]:
    yield from replica_cluster(settings, tmp_path_factory.mktemp("dm-replicas"))


def _wait(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


def _member(http: httpx.Client) -> IOSClient:
    return IOSClient(http).sign_up("d" + uuid.uuid4().hex[:7])


def _socket(app: IOSClient, addr: str, nickname: str | None = None) -> ClientConnection:
    query = f"?nickname={quote(nickname if nickname is not None else app.nickname)}"
    headers = {"Authorization": app.access, "email": app.email}
    return connect(f"ws://{addr}/dm-service/connect-dm{query}", additional_headers=headers, open_timeout=10)


def _frame(sender: IOSClient, receiver: IOSClient, text: str, date: int | bool | None = True) -> str:
    """A frame from ``sender`` dated now by the client (``date=None``: undated; else that date)."""
    frame: dict[str, Any] = {"sender": sender.nickname, "receiver": receiver.nickname, "text": text}
    if date is not None:
        frame["date"] = now_kst() if date is True else date
    return json.dumps(frame, ensure_ascii=False)


def _texts_until(ws: ClientConnection, last: str) -> list[str]:
    texts: list[str] = []
    while not texts or texts[-1] != last:
        texts.append(json.loads(ws.recv(timeout=FRAME_WAIT))["text"])
    return texts


def _silent(ws: ClientConnection, seconds: float = 0.7) -> bool:
    try:
        ws.recv(timeout=seconds)
    except TimeoutError:
        return True
    return False


def test_the_handshake_is_authenticated_before_the_upgrade(http: httpx.Client, cluster: Cluster) -> None:
    me, other = _member(http), _member(http)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{cluster.a}/dm-service/connect-dm?nickname={me.nickname}", open_timeout=10)
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as not_mine:
        _socket(me, cluster.a, nickname=other.nickname)
    assert not_mine.value.response.status_code == 403
    korean = IOSClient(http).sign_up("소" + uuid.uuid4().hex[:5])
    with _socket(korean, cluster.a) as ws:  # percent-encoded non-ASCII nickname, decoded by the server
        assert _silent(ws, 0.2)


def test_same_replica_delivery_reaches_every_device_once_and_is_stored_first(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    alice, bob = _member(http), _member(http)
    with (
        _socket(alice, cluster.a) as phone,
        _socket(alice, cluster.a) as tablet,
        _socket(bob, cluster.a) as b,
    ):
        date = now_kst()
        b.send(_frame(bob, alice, "안녕 🩷", date))
        expected = {"sender": bob.nickname, "receiver": alice.nickname, "date": date, "text": "안녕 🩷"}
        assert json.loads(phone.recv(timeout=FRAME_WAIT)) == expected
        assert json.loads(tablet.recv(timeout=FRAME_WAIT)) == expected
        assert _silent(phone) and _silent(b)  # once each, and no echo to the sender
    assert room_page(activity_deps, alice.nickname, bob.nickname) == [expected]


def test_cross_replica_delivery_and_devices_on_both_replicas(http: httpx.Client, cluster: Cluster) -> None:
    alice, bob = _member(http), _member(http)
    with _socket(alice, cluster.b) as far, _socket(alice, cluster.a) as near, _socket(bob, cluster.a) as b:
        time.sleep(0.3)
        b.send(_frame(bob, alice, "across", date=None))
        got_far = json.loads(far.recv(timeout=FRAME_WAIT))
        assert json.loads(near.recv(timeout=FRAME_WAIT)) == got_far
        assert got_far["text"] == "across" and len(str(got_far["date"])) == 16  # date set by the server
        assert _silent(far) and _silent(near)


def test_an_offline_receiver_gets_a_push(
    http: httpx.Client, cluster: Cluster, fcm_emulator: FcmEmulator
) -> None:
    alice, bob = _member(http), _member(http)
    with _socket(bob, cluster.b) as b:
        b.send(_frame(bob, alice, "are you there?"))
        _wait(lambda: fcm_emulator.messages(alice.device_token), 30)
    [push] = fcm_emulator.messages(alice.device_token)
    assert push["message"]["notification"] == {"title": bob.nickname, "body": "are you there?"}
    assert push["message"]["data"]["count"] == "1"  # data carries ids, not the text


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("not json", "not JSON"),
        ("[" * 8000 + "]" * 8000, "not JSON"),  # deeper than the parser's stack, under the frame limit
        ("[1]", "JSON object"),
        ('{"sender": "someone-else", "receiver": "x", "text": "hi"}', "sender"),
        ('{"sender": "$me", "receiver": "nobody1", "text": "hi"}', "no user"),
        ('{"sender": "$me", "receiver": "nobody-here", "text": "hi"}', "receiver must be at most 10"),
        ('{"sender": "$me", "receiver": "$you\\u200b", "text": "hi"}', "receiver must not contain"),
        ('{"sender": "$me", "receiver": "\\u202e$you", "text": "hi"}', "receiver must not contain"),
        ('{"sender": "$me\\u200b", "receiver": "$you", "text": "hi"}', "sender must be your own"),
        ('{"sender": "$me", "receiver": " $me ", "text": "hi"}', "yourself"),
        ('{"sender": "$me", "receiver": "$you", "text": ""}', "text"),
        ('{"sender": "$me", "receiver": "$you", "text": "hi \\ud800"}', "lone surrogates"),
        ('{"sender": "$me", "receiver": "$you", "text": "hi \\u202eereh"}', "U+202E"),
        ('{"sender": "$me", "receiver": "$you", "text": "' + "가" * 2001 + '"}', "at most"),
        ('{"sender": "$me", "receiver": "$you", "text": "hi", "date": 2024133017042712}', "date"),
        ('{"sender": "$me", "receiver": "$me", "text": "hi"}', "yourself"),
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open(
    http: httpx.Client, cluster: Cluster, frame: str, reason: str
) -> None:
    me, you = _member(http), _member(http)
    with _socket(me, cluster.a) as ws, _socket(you, cluster.a) as inbox:
        ws.send(frame.replace("$me", me.nickname).replace("$you", you.nickname))
        answer = json.loads(ws.recv(timeout=FRAME_WAIT))
        assert reason in answer["error"]
        ws.send(_frame(me, you, "still here"))
        assert json.loads(inbox.recv(timeout=FRAME_WAIT))["text"] == "still here"


def test_a_receiver_who_blocked_the_sender_gets_nothing(http: httpx.Client, cluster: Cluster) -> None:
    me, you = _member(http), _member(http)
    resp = you.post_multipart(
        "/auth-service/block", [("srcNickname", you.nickname), ("dstNickname", me.nickname)]
    )
    assert resp.json() == {"success": True}
    with _socket(me, cluster.a) as ws, _socket(you, cluster.a) as inbox:
        ws.send(_frame(me, you, "hello?"))
        assert "does not accept" in json.loads(ws.recv(timeout=FRAME_WAIT))["error"]
        assert _silent(inbox)


def test_without_the_broker_messages_are_stored_delivered_locally_and_pushed(
    http: httpx.Client, cluster: Cluster, fcm_emulator: FcmEmulator, activity_deps: ActivityDeps
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    cluster.broker.stop()
    try:
        with _socket(alice, cluster.a) as a, _socket(bob, cluster.a) as b:
            b.send(_frame(bob, alice, "local while the broker is down"))
            assert json.loads(a.recv(timeout=FRAME_WAIT))["text"] == "local while the broker is down"
            b.send(_frame(bob, carol, "carol is offline"))
            _wait(lambda: fcm_emulator.messages(carol.device_token), 30)
        assert len(room_page(activity_deps, bob.nickname, carol.nickname)) == 1
    finally:
        cluster.broker.start().wait_for_port(cluster.broker_port)
    # Replicas reconnect: cross-replica delivery works again.
    with _socket(alice, cluster.b) as far, _socket(bob, cluster.a) as b:

        def delivered() -> bool:
            b.send(_frame(bob, alice, "back"))
            try:
                return json.loads(far.recv(timeout=2))["text"] == "back"
            except TimeoutError:
                return False

        _wait(delivered, 60)


def test_a_replica_that_dies_drops_only_its_own_sockets(
    http: httpx.Client, cluster: Cluster, settings: Settings, tmp_path: Path, activity_deps: ActivityDeps
) -> None:
    alice, bob = _member(http), _member(http)
    env = _env(settings, kafka_bootstrap=f"127.0.0.1:{cluster.broker_port}", worker_metrics_port=0)
    doomed, doomed_addr = _replica("api-c", env, tmp_path)
    try:
        _wait(lambda: httpx.get(f"http://{doomed_addr}/readyz").status_code == 200, 60)
        with (
            _socket(alice, doomed_addr) as dying,
            _socket(alice, cluster.a) as phone,
            _socket(bob, cluster.a) as b,
        ):
            doomed.proc.kill()  # type: ignore[union-attr]  # SIGKILL: no clean shutdown
            doomed.proc.wait()  # type: ignore[union-attr]
            # Live replicas stamp their rows every second from now on; the dead one's stay behind.
            alive_since = (utcnow() + timedelta(seconds=1)).replace(microsecond=0)
            with pytest.raises(Exception):  # noqa: B017 - the connection is gone, however it surfaces
                dying.recv(timeout=FRAME_WAIT)
            b.send(_frame(bob, alice, "still reachable"))
            assert json.loads(phone.recv(timeout=FRAME_WAIT))["text"] == "still reachable"
            with _socket(alice, cluster.b) as reconnected:  # the client reconnects elsewhere
                # Until bob's replica knows of alice's new socket (a broadcast, or the table at its next
                # beat), a message to her rightly goes to the sockets it knows of and to a push.
                wait_until_seen(activity_deps, alice, alice, bob, since=alive_since)
                b.send(_frame(bob, alice, "after the reconnect"))
                # The new socket may first get "still reachable": it was broadcast while alice still
                # counted as present on the dead replica, and reached her new socket's replica later.
                texts = _texts_until(reconnected, "after the reconnect")
                assert texts[-1] == "after the reconnect" and set(texts[:-1]) <= {"still reachable"}
                assert json.loads(phone.recv(timeout=FRAME_WAIT))["text"] == "after the reconnect"
                assert _silent(reconnected) and _silent(phone)
    finally:
        doomed.stop()


def test_every_spelling_of_a_nickname_names_the_same_user_on_the_socket(
    http: httpx.Client, cluster: Cluster, activity_deps: ActivityDeps
) -> None:
    me, you = IOSClient(http).sign_up(hangul_nick()), IOSClient(http).sign_up(hangul_nick())
    for fake in [*spellings(you.nickname), *look_alikes(me.nickname), ""]:
        with pytest.raises(InvalidStatus) as refused:  # someone else, or nobody: refused before the upgrade
            _socket(me, cluster.a, nickname=fake)
        assert refused.value.response.status_code == 403, repr(fake)
    sent = []
    for mine, theirs in zip(spellings(me.nickname), spellings(you.nickname), strict=True):
        with _socket(me, cluster.a, nickname=mine) as ws, _socket(you, cluster.a, nickname=theirs) as inbox:
            text, date = f"to {theirs!r}", now_kst()
            ws.send(json.dumps({"sender": mine, "receiver": theirs, "text": text, "date": date}))
            got = json.loads(inbox.recv(timeout=FRAME_WAIT))
            assert got == {
                "sender": me.nickname,
                "receiver": you.nickname,
                "date": date,
                "text": text,
            }
            sent.append(got)
    # Stored under the canonical names, so the room is one room whatever the spelling.
    assert room_page(activity_deps, me.nickname, you.nickname) == sent
