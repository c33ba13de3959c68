"""The DM socket limits as pure logic (``dm.limits``, ``api.dm_limits``) and the socket's send path (``dm.sockets.Socket``)
against a fake connection: counted frames on a fake clock, nothing waits on the wall clock."""

from __future__ import annotations

import asyncio
from typing import Any

from api.dm_limits import ConnectGate, FrameGate
from api.serve import uvicorn_options
from config import Settings
from dm.limits import FLOODING, REPLACED, SEND_QUEUE_CHARS, SLOW, TOO_BIG, SocketCap, SocketStamp
from dm.sockets import Socket
from tests.fixtures.clock import FakeClock


def _gate(clock: FakeClock, **limits: Any) -> FrameGate:
    return FrameGate(Settings(env="test", **limits), clock)


def _text(n: int) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": "x" * n}


def test_a_frame_over_the_size_limit_is_refused_with_1009() -> None:
    gate = _gate(FakeClock(), dm_max_frame_bytes=2048)
    assert gate.admit(_text(2048)) is None
    refusal = gate.admit({"type": "websocket.receive", "text": "가" * 683})  # 2049 bytes in UTF-8
    assert refusal is not None and refusal.close == TOO_BIG and "2048 bytes" in refusal.reason
    assert gate.admit({"type": "websocket.receive", "bytes": b"\0" * 2049}) is not None


def test_frames_beyond_the_burst_are_refused_until_the_bucket_refills_then_a_flood_closes() -> None:
    clock = FakeClock()
    gate = _gate(clock, dm_frame_rate_per_second=2, dm_frame_burst=3, dm_frame_strikes=2)
    assert [gate.admit(_text(5)) for _ in range(3)] == [None, None, None]
    first = gate.admit(_text(5))
    assert first is not None and first.close is None and "at most 2 a second" in first.reason
    clock.now += 0.5  # one frame's worth
    assert gate.admit(_text(5)) is None
    second = gate.admit(_text(5))
    assert second is not None and second.close is None
    flood = gate.admit(_text(5))  # the third refusal in a row: more than 2 strikes
    assert flood is not None and flood.close == FLOODING


def test_strikes_are_forgiven_one_a_second() -> None:
    clock = FakeClock()
    gate = _gate(clock, dm_frame_rate_per_second=1, dm_frame_burst=1, dm_frame_strikes=2)
    assert gate.admit(_text(1)) is None
    for _ in range(20):  # two frames a second against a rate of one: a refusal a second, never closed
        refused = gate.admit(_text(1))
        assert refused is not None and refused.close is None
        clock.now += 1
        assert gate.admit(_text(1)) is None


def _stamp(at: float, replica: str = "a", seq: int = 0) -> SocketStamp:
    return SocketStamp(at, replica, seq)


def test_the_cap_closes_the_oldest_local_sockets() -> None:
    cap = SocketCap(limit=2, remember_seconds=15, clock=FakeClock())
    local = {_stamp(t, seq=t): f"s{t}" for t in (3, 1, 2)}
    assert cap.over_limit(7, local) == ["s1"]
    assert cap.over_limit(7, {_stamp(1): "only"}) == []


def test_the_cap_counts_the_sockets_other_replicas_announced_while_they_are_fresh() -> None:
    clock = FakeClock()
    cap = SocketCap(limit=3, remember_seconds=15, clock=clock)
    local = {_stamp(1.0, "a"): "oldest", _stamp(5.0, "a"): "newest"}
    cap.heard(7, "b", [_stamp(2.0, "b"), _stamp(3.0, "b")])
    assert cap.over_limit(7, local) == ["oldest"]
    cap.heard(7, "b", [_stamp(9.0, "b"), _stamp(8.0, "b"), _stamp(7.0, "b")])  # b's list replaces b's
    assert cap.over_limit(7, local) == ["oldest", "newest"]
    cap.heard(7, "b", [])  # b has none left
    assert cap.over_limit(7, local) == []
    cap.heard(7, "b", [_stamp(9.0, "b"), _stamp(8.0, "b")])
    clock.now += 16  # b's word is stale (a replica that died says nothing more)
    assert cap.over_limit(7, local) == []
    cap.heard(7, "b", [_stamp(9.0, "b"), _stamp(8.0, "b")])
    cap.forget(7)
    assert cap.over_limit(7, local) == []
    assert cap.over_limit(8, local) == []  # other users are not counted


def test_equal_opening_times_are_ranked_the_same_way_on_every_replica() -> None:
    on_a = SocketCap(limit=1, remember_seconds=15, clock=FakeClock())
    on_b = SocketCap(limit=1, remember_seconds=15, clock=FakeClock())
    a, b = _stamp(1.0, "a"), _stamp(1.0, "b")
    on_a.heard(7, "b", [b])
    on_b.heard(7, "a", [a])
    assert on_a.over_limit(7, {a: "a's"}) == ["a's"] and on_b.over_limit(7, {b: "b's"}) == []
    assert SocketStamp.from_wire(a.wire()) == a


class StuckConnection:
    """A connection whose peer reads nothing: every send waits forever (as uvicorn's does once the
    transport's write buffer is full); ``close`` is recorded."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self._never = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        await self._never.wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        await self._never.wait()

    async def receive(self) -> dict[str, Any]:
        await self._never.wait()
        raise AssertionError("unreachable")


async def test_a_send_that_does_not_complete_in_time_closes_the_socket_as_slow() -> None:
    conn = StuckConnection()
    sock = Socket(conn, send_timeout=0.01)  # type: ignore[arg-type]
    assert await sock.send("one")
    disconnect = await asyncio.wait_for(sock.receive(), 30)  # the reader is released by the close
    assert disconnect == {"type": "websocket.disconnect", "code": SLOW[0]}
    assert sock.close_code == SLOW[0] and not await sock.send("two")
    await asyncio.wait_for(sock.finish(), 30)
    assert conn.sent == ["one"]


async def test_frames_piling_up_for_a_receiver_that_does_not_read_close_it_at_once() -> None:
    conn = StuckConnection()
    sock = Socket(conn, send_timeout=3600)  # type: ignore[arg-type]
    frame = "가" * 2000
    accepted = 0
    while await sock.send(frame):
        accepted += 1
    assert accepted == SEND_QUEUE_CHARS // len(frame)  # the queue's bound, not the clock, closed it
    assert sock.close_code == SLOW[0]
    assert await asyncio.wait_for(sock.receive(), 30) == {"type": "websocket.disconnect", "code": SLOW[0]}
    await asyncio.wait_for(sock.finish(), 30)
    assert conn.sent == [] and conn.closed == SLOW  # nothing queued for it is sent any more


async def test_a_server_side_close_sends_what_is_queued_then_the_close_frame() -> None:
    sent: list[Any] = []

    class Reading(StuckConnection):
        async def send_text(self, text: str) -> None:
            sent.append(text)

        async def close(self, code: int, reason: str) -> None:
            sent.append((code, reason))

    sock = Socket(Reading(), send_timeout=30)  # type: ignore[arg-type]
    assert await sock.send("error 1") and await sock.send("error 2")
    sock.close(*REPLACED)
    sock.close(*FLOODING)  # the first reason wins
    assert (await sock.receive())["code"] == REPLACED[0]
    await asyncio.wait_for(sock.finish(), 30)
    assert sent == ["error 1", "error 2", REPLACED]


def test_the_api_process_refuses_oversized_frames_in_uvicorn_too() -> None:
    settings = Settings(env="test", dm_max_frame_bytes=4096)
    assert uvicorn_options(settings)["ws_max_size"] == 4096  # so nothing larger is even buffered


def test_a_user_opening_sockets_too_often_is_refused_until_the_bucket_refills() -> None:
    clock = FakeClock()
    gate = ConnectGate(Settings(env="test", dm_connect_burst=3, dm_connects_per_minute=6), clock)
    assert [gate.refusal(7) for _ in range(3)] == [None, None, None]
    refused = gate.refusal(7)
    assert refused is not None and "retry in 10 s" in refused
    assert gate.refusal(8) is None  # per user
    clock.now += 10  # one socket's worth
    assert gate.refusal(7) is None
    assert gate.refusal(7) is not None
