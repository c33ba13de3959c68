"""Client side of ``bench.dm``: socket pairs, open-loop and closed-loop message load, delivery statistics.

Every message's text is ``"<sequence> <send time>"`` (``time.perf_counter`` of this process, which runs
every client), so the receiving socket computes the end-to-end latency and spots lost, duplicated and
misrouted messages. Clients connect with permessage-deflate off (``compression=None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DATE = 2025061512000000  # the frames' ``date`` (yyyyMMddHHmmssSS); the server dates them itself


@dataclass(frozen=True)
class End:
    """One socket of a pair: whose, where it connects and with which headers."""

    nickname: str
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Pair:
    """A sender socket and the receiver socket its messages go to."""

    sender: End
    receiver: End


@dataclass
class Stats:
    """What one measurement sent and what arrived."""

    label: str
    first_seq: int
    sent: int = 0
    received: int = 0  # distinct messages that arrived at their receiver
    dup: int = 0
    errors: int = 0  # error frames to senders, unparsable or misrouted frames
    stray: int = 0  # late arrivals from an earlier measurement
    latencies: list[float] = field(default_factory=list)  # seconds, measured messages only
    sent_times: list[float] = field(default_factory=list)  # when each of ``latencies`` was sent
    window: tuple[float, float] = (0.0, 0.0)
    in_window: int = 0  # arrivals inside the window
    lag: float = 0.0  # worst lateness of the open-loop schedule, seconds
    samples: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Messages sent that never arrived."""
        return self.sent - self.received

    @property
    def rate(self) -> float:
        """Deliveries per second inside the measured window."""
        span = self.window[1] - self.window[0]
        return self.in_window / span if span > 0 else 0.0

    def pct(self, q: float) -> float:
        """The q-quantile of end-to-end latency in milliseconds (NaN without samples)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def by_minute(self, q: float, minute: float = 60.0) -> list[float]:
        """The q-quantile of latency (ms) of the messages sent in each ``minute`` of the window."""
        buckets: dict[int, list[float]] = {}
        for sent_at, latency in zip(self.sent_times, self.latencies, strict=True):
            buckets.setdefault(int((sent_at - self.window[0]) // minute), []).append(latency)
        quantile = [sorted(b)[min(len(b) - 1, int(q * len(b)))] for _, b in sorted(buckets.items())]
        return [1000 * v for v in quantile]

    def error(self, text: str) -> None:
        """Count an error and keep the first few."""
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text[:200])


class Session:
    """The open sockets of a set of pairs and the bookkeeping of one measurement at a time."""

    def __init__(self, pairs: list[Pair]) -> None:
        self.pairs = pairs
        self.senders: list[ClientConnection] = []
        self.receivers: list[ClientConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.stats = Stats("idle", 0)
        self.seq = 0
        self.meta: dict[int, tuple[int, bool]] = {}  # seq -> (pair, measured)
        self.seen: set[int] = set()
        self.on_receive: Callable[[int], None] | None = None
        self.complete = asyncio.Event()  # set whenever everything sent so far has arrived

    async def open(self) -> None:
        """Connect every socket (a few at a time) and start reading them."""
        gate = asyncio.Semaphore(8)

        async def one(end: End) -> ClientConnection:
            async with gate:
                return await connect(
                    end.url,
                    additional_headers=end.headers,
                    compression=None,
                    open_timeout=30,
                    ping_interval=None,
                )

        self.receivers = list(await asyncio.gather(*(one(p.receiver) for p in self.pairs)))
        self.senders = list(await asyncio.gather(*(one(p.sender) for p in self.pairs)))
        for i, (tx, rx) in enumerate(zip(self.senders, self.receivers, strict=True)):
            self.readers.append(asyncio.ensure_future(self._read_receiver(i, rx)))
            self.readers.append(asyncio.ensure_future(self._read_sender(tx)))

    async def close(self) -> None:
        """Close every socket."""
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.senders + self.receivers), return_exceptions=True)

    def begin(self, label: str) -> Stats:
        """Start a new measurement: later arrivals of earlier messages count as stray."""
        self.stats = Stats(label, self.seq)
        self.meta, self.seen = {}, set()
        self.on_receive = None
        return self.stats

    async def send(self, i: int, measured: bool, at: float | None = None) -> None:
        """Send the next message of pair ``i``, timed from ``at`` (its scheduled time) or now."""
        seq, self.seq = self.seq, self.seq + 1
        sent_at = time.perf_counter() if at is None else at
        self.meta[seq] = (i, measured)
        pair = self.pairs[i]
        frame = {
            "sender": pair.sender.nickname,
            "receiver": pair.receiver.nickname,
            "date": DATE,
            "text": f"{seq} {sent_at:.6f}",
        }
        self.stats.sent += 1
        try:
            await self.senders[i].send(json.dumps(frame))
        except ConnectionClosed as exc:  # counted (and the message lost), the run goes on
            self.stats.error(f"sender {i} closed: {exc}")

    async def _read_sender(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self.stats.error(f"to sender: {raw!s}")

    async def _read_receiver(self, i: int, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                self._arrived(i, str(raw), time.perf_counter())

    def _arrived(self, i: int, raw: str, now: float) -> None:
        st = self.stats
        try:
            seq_text, sent_text = json.loads(raw)["text"].split()
            seq, sent_at = int(seq_text), float(sent_text)
        except (ValueError, KeyError, TypeError, AttributeError):
            st.error(f"unparsable at receiver: {raw}")
            return
        if seq < st.first_seq:
            st.stray += 1
            return
        pair, measured = self.meta.get(seq, (-1, False))
        if pair != i:
            st.error(f"misrouted to pair {i}: {raw}")
            return
        if seq in self.seen:
            st.dup += 1
            return
        self.seen.add(seq)
        st.received += 1
        if measured:
            st.latencies.append(now - sent_at)
            st.sent_times.append(sent_at)
        if st.window[0] <= now <= st.window[1]:
            st.in_window += 1
        if self.on_receive is not None:
            self.on_receive(i)
        if st.received >= st.sent:
            self.complete.set()

    async def drain(self, seconds: float = 5.0) -> None:
        """Wait until everything sent has arrived, at most ``seconds``."""
        self.complete.clear()
        if self.stats.received < self.stats.sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.complete.wait(), seconds)
        await asyncio.sleep(0.2)  # room for duplicates to show up


async def open_loop(session: Session, label: str, rate: float, warmup: float, duration: float) -> Stats:
    """Messages at ``rate`` per second in total, round-robin over the pairs, on a fixed schedule (latency
    counts from the scheduled time, so a stalled sender cannot hide it), for ``warmup`` + ``duration``."""
    st = session.begin(label)
    start = time.perf_counter() + 0.05
    measure_from, end = start + warmup, start + warmup + duration
    st.window = (measure_from, end)
    k = 0
    while (at := start + k / rate) < end:
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        st.lag = max(st.lag, time.perf_counter() - at)
        await session.send(k % len(session.pairs), at >= measure_from, at)
        k += 1
    await session.drain()
    return st


async def closed_loop(session: Session, label: str, window: int, warmup: float, duration: float) -> Stats:
    """Every sender keeps at most ``window`` messages in flight (sending the next when one arrives), for
    ``warmup`` + ``duration``; the rate counts arrivals after the warm-up."""
    st = session.begin(label)
    slots = [asyncio.Semaphore(window) for _ in session.pairs]
    session.on_receive = lambda i: slots[i].release()
    start = time.perf_counter()
    measure_from, end = start + warmup, start + warmup + duration
    st.window = (measure_from, end)

    async def sender(i: int) -> None:
        while time.perf_counter() < end:
            try:
                await asyncio.wait_for(slots[i].acquire(), timeout=10)
            except TimeoutError:
                st.error(f"pair {i}: no delivery for 10 s; sender stopped")
                return
            if time.perf_counter() < end:
                await session.send(i, time.perf_counter() >= measure_from)

    await asyncio.gather(*(sender(i) for i in range(len(session.pairs))))
    await session.drain()
    return st


async def probe(session: Session, i: int, within: float) -> float:
    """Send on pair ``i`` every half second until one arrives: seconds until then (the route works)."""
    st = session.begin(f"probe {i}")
    started = time.perf_counter()
    while time.perf_counter() - started < within:
        await session.send(i, False)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if st.received:
                return time.perf_counter() - started
    raise TimeoutError(f"no probe message crossed in {within:.0f} s ({st.samples})")
