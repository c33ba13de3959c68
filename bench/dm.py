"""Direct-message benchmark: socket pairs over two API replicas against a minimal relay and the insert ceiling.

    .venv/bin/python -m bench.dm [--pairs 20] [--rate 100] [--duration 15] [--sustained 300] [--close-reps 20]

Starts a throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB), the Tansu
broker, the SecantusDB MongoDB-wire server, two API replicas (uvicorn, websockets-sansio,
permessage-deflate off; Temporal points at an unused port: every receiver is connected, so nothing is
pushed) and two ``bench.dm_relay`` processes linked to each other (the baseline: no storage, no auth).
For same-replica pairs (pair i on replica i % 2) and cross-replica pairs (sender on one replica,
receiver on the other, half each way) it measures end-to-end latency at ``--rate`` messages/s in
total (open loop) and the most messages/s with ``--window`` in flight per sender (closed loop), on the
API and on the relay; then a sustained cross-replica run of ``--sustained`` seconds at ``--rate``
(p99 per minute); then the server's sustained ``insert_one`` rate right before and after the API's
throughput runs; then how fast a revoked login's sockets close on both replicas (``bench.socket_close``).
Every API phase prints the replicas' CPU per delivered message. Targets: cross-replica p99 < 50 ms at
100/s; over the sustained run p99 < 50 ms and the last minute's p99 <= 1.5 × the first minute's;
throughput >= 0.7 × the insert ceiling measured right before it; API CPU <= 1.5 ms per delivered
message; sockets closed < 1 s after the revoking response.

The replicas' per-socket frame rate limit is raised (it would cap each sender at 20 frames/s: the
throughput runs measure the message path, not the limiter). The Mongo URL is the local one without
retryable writes (``devstack.processes.local_mongo_url``); ``--retry-writes`` uses the driver's default,
with which SecantusDB keeps a record of every write for 30 minutes and scans them all on each write, so
its inserts fall from ~120/s to ~25/s within minutes. The in-memory Tansu broker costs more CPU per
fetch that returns data the more record batches the partition holds (bench/HISTORY.md), so figures
still depend somewhat on what ran before them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from accounts.tokens import ACCESS, TokenIssuer
from bench import dm_ceiling, socket_close
from bench.api_stack import throwaway_run
from bench.cli import stop_on_sigterm
from bench.dm_ceiling import Ceiling
from bench.dm_load import End, Pair, Session, Stats, closed_loop, open_loop, probe
from bench.feed import cpu_seconds, server_facts
from bench.feed_seed import account, connect, insert_users, nickname, session_id
from bench.signin import say
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port, local_mongo_url, mongo_argv
from storage.db import migrate
from temporal.codec import generate_key_entry

REPLICAS = ("api-a", "api-b")
RELAYS = ("relay-1", "relay-2")


@dataclass
class Stack:
    """The started processes, their ports and what the benchmark needs to reach them."""

    procs: dict[str, ManagedProcess]
    ports: dict[str, int]
    db_url: str
    mongo_url: str
    issuer: TokenIssuer

    def pids(self) -> dict[str, int]:
        """Process ids by name."""
        return {name: p.proc.pid for name, p in self.procs.items() if p.proc is not None}

    def api_end(self, user: int, replica: str) -> End:
        """User ``user``'s DM socket on ``replica``, with its access token."""
        token = self.issuer.issue(ACCESS, account(user), user, session_id(user), 0)
        url = f"ws://127.0.0.1:{self.ports[replica]}/dm-service/connect-dm?nickname={nickname(user)}"
        return End(nickname(user), url, {"Authorization": f"Bearer {token}", "email": account(user)})

    def relay_end(self, user: int, relay: str) -> End:
        """User ``user``'s socket on relay process ``relay`` (no auth)."""
        return End(nickname(user), f"ws://127.0.0.1:{self.ports[relay]}/?nickname={nickname(user)}", {})


def start(work: Path, db_url: str, args: argparse.Namespace, procs: dict[str, ManagedProcess]) -> Stack:
    """Broker, MongoDB-wire server, two API replicas and two linked relays, all listening (each started
    process goes into ``procs`` at once, so the caller stops it whatever happens)."""
    names = ("kafka", "mongo", "temporal", *REPLICAS, *(metrics_port(r) for r in REPLICAS), *RELAYS)
    ports = {name: free_port() for name in names}
    # For the replicas and the insert ceiling alike.
    mongo_url = (
        f"mongodb://127.0.0.1:{ports['mongo']}" if args.retry_writes else local_mongo_url(ports["mongo"])
    )
    env = {
        "SOSOHAPPY_ENV": "test",
        "SOSOHAPPY_DATABASE_URL": db_url,
        "SOSOHAPPY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "SOSOHAPPY_MONGO_URL": mongo_url,
        "SOSOHAPPY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",  # nothing listens: no pushes
        "SOSOHAPPY_WORKER_METRICS_PORT": "0",
        "SOSOHAPPY_KAFKA_FETCH_MAX_WAIT_MS": str(args.fetch_wait_ms),
        "SOSOHAPPY_DM_FRAME_RATE_PER_SECOND": "100000",  # the limiter is not what is measured
        "SOSOHAPPY_DM_FRAME_BURST": "100000",
        # One relay key for both replicas, as in production (each relayed record is sealed and opened).
        "SOSOHAPPY_RELAY_KEYS": generate_key_entry("bench-relay"),
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.api_process:app", "--factory", "--http", "h11"]
    uvicorn += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--no-access-log"]
    uvicorn += ["--log-level", "warning", "--ws-ping-timeout", "300"]  # a starved client still counts
    relay = [sys.executable, "-m", "bench.dm_relay", "--port"]
    specs: list[tuple[str, list[str], dict[str, str] | None]] = [
        ("kafka", broker_argv(ports["kafka"]), None),
        ("mongo", mongo_argv(ports["mongo"], work / "mongo"), None),
        *(
            (
                r,
                [*uvicorn, "--port", str(ports[r])],
                {**env, "SOSOHAPPY_API_METRICS_PORT": str(ports[metrics_port(r)])},
            )
            for r in REPLICAS
        ),
        (
            "relay-1",
            [*relay, str(ports["relay-1"]), "--peer", f"ws://127.0.0.1:{ports['relay-2']}/peer"],
            None,
        ),
        (
            "relay-2",
            [*relay, str(ports["relay-2"]), "--peer", f"ws://127.0.0.1:{ports['relay-1']}/peer"],
            None,
        ),
    ]
    stack = Stack(procs, ports, db_url, mongo_url, TokenIssuer(Settings(env="test", database_url=db_url)))
    for name, argv, extra in specs:
        procs[name] = ManagedProcess(name, argv, work / f"{name}.log", env=extra).start()
        procs[name].wait_for_port(ports[name], timeout=90)
    for replica in REPLICAS:
        ready = partial(_ready, ports[replica], ports[metrics_port(replica)])
        procs[replica].wait_until(ready, 90, "database, MongoDB and Kafka ok")
    return stack


def metrics_port(replica: str) -> str:
    """The name of ``replica``'s metrics port in ``Stack.ports``."""
    return f"{replica}-metrics"


def _ready(port: int, metrics: int) -> bool:
    """``/readyz`` found the database, MongoDB and Kafka up (Temporal is down on purpose): its checks'
    gauges on the metrics port say so."""
    try:
        if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code != 200:
            return False
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics", timeout=5).text
    except httpx.HTTPError:
        return False
    up = {f'sosohappy_dependency_up{{dependency="{name}"}} 1.0' for name in ("database", "mongo", "kafka")}
    return up <= set(text.splitlines())


def seed(db_url: str, users: int) -> None:
    """Users ``1..users`` with nicknames and an active login session each."""
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            insert_users(cur, range(1, users + 1))
        conn.commit()
    finally:
        conn.close()


def presence_rows(db_url: str) -> int:
    """Rows in ``dm_presence`` (one per user and replica with an open socket)."""
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM dm_presence")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def layout(first: int, n: int, cross: bool, sides: tuple[str, str], end: str, stack: Stack) -> list[Pair]:
    """``n`` pairs of users ``first, first + 1, …``: pair i sends from ``sides[i % 2]`` and receives on
    the same side, or (``cross``) on the other one."""
    make = stack.api_end if end == "api" else stack.relay_end
    pairs = []
    for i in range(n):
        sender, receiver = first + 2 * i, first + 2 * i + 1
        there = sides[(i + cross) % 2]
        pairs.append(Pair(make(sender, sides[i % 2]), make(receiver, there)))
    return pairs


def machine_busy() -> float:
    """CPU seconds all cores of this machine spent busy so far (Linux ``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class CpuMeter:
    """CPU use of every process of the stack, this one and the whole machine between ``start`` and
    ``stop`` (other work on the machine shows as the difference)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.last: dict[str, float] = {}  # CPU seconds per process of the last start..stop
        self.span = 0.0
        self.t0 = 0.0

    def api_seconds(self) -> float:
        """The API replicas' CPU seconds over the last start..stop."""
        return sum(self.last.get(name, 0.0) for name in REPLICAS)

    def per_message(self, delivered: int, idle: float = 0.0) -> float:
        """The API replicas' CPU milliseconds per delivered message over the last start..stop, less
        ``idle`` CPU seconds per second (what they burn with no message: broker polls, heartbeats)."""
        api = self.api_seconds() - idle * self.span
        return 1000 * api / delivered if delivered else math.nan

    def _now(self) -> dict[str, float]:
        seconds = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        return seconds | {"bench": time.process_time(), "machine": machine_busy()}

    def start(self) -> None:
        """Snapshot CPU seconds now."""
        self.before, self.t0 = self._now(), time.perf_counter()

    def stop(self) -> str:
        """Each process's CPU as % of one core since ``start``, then the machine's of all cores."""
        span, after = time.perf_counter() - self.t0, self._now()
        self.span = span
        self.last = {name: after[name] - self.before[name] for name in after}
        used = {name: 100 * seconds / span for name, seconds in self.last.items()}
        machine = used.pop("machine")
        ours = ", ".join(f"{name} {pct:.0f}%" for name, pct in used.items() if pct >= 1)
        return f"{ours}; machine {machine:.0f}% of {100 * (os.cpu_count() or 1)}%"


def _cpu_per_message(phase: str, meter: CpuMeter, st: Stats) -> None:
    if not phase.startswith("API"):  # a relay phase: the replicas are idle, their CPU is the baseline
        IDLE_API_CPU.append(meter.api_seconds() / meter.span if meter.span else 0.0)
        return
    idle = min(IDLE_API_CPU, default=0.0)
    CPU_PER_MESSAGE[phase] = meter.per_message(st.received)
    NET_CPU_PER_MESSAGE[phase] = meter.per_message(st.received, idle)
    say(
        f"  API CPU per delivered message: {CPU_PER_MESSAGE[phase]:.2f} ms "
        f"({NET_CPU_PER_MESSAGE[phase]:.2f} ms beyond the idle replicas' {1000 * idle:.0f} ms/s)"
    )


def line(st: Stats) -> str:
    """Rate, latency percentiles and delivery counts of one measurement."""
    extra = f"  stray {st.stray}" if st.stray else ""
    return (
        f"{st.rate:7.1f}/s  p50 {st.pct(0.5):7.1f} ms  p99 {st.pct(0.99):7.1f} ms  sent {st.sent}  "
        f"lost {st.lost}  dup {st.dup}  errors {st.errors}  schedule lag {1000 * st.lag:.0f} ms{extra}"
    )


#: API CPU milliseconds per delivered message, by phase (filled as the phases run).
CPU_PER_MESSAGE: dict[str, float] = {}
#: The same less what the idle replicas burn (``IDLE_API_CPU``: CPU seconds per second of both replicas
#: during each relay phase, when no message reaches them).
NET_CPU_PER_MESSAGE: dict[str, float] = {}
IDLE_API_CPU: list[float] = []


async def phases(
    session: Session, prefix: str, args: argparse.Namespace, meter: CpuMeter, only: str = "both"
) -> dict[str, Stats]:
    """The latency run at ``args.rate`` and/or the throughput run on an open session (``only``:
    ``latency``, ``max``, ``sustained``: the latency run for ``args.sustained`` seconds)."""
    found: dict[str, Stats] = {}
    gc.collect()  # not in the middle of a run
    if only in ("both", "latency", "sustained"):
        seconds = args.sustained if only == "sustained" else args.duration
        say(f"{prefix} @{args.rate:g}/s: {args.warmup:g} s warm-up + {seconds:g} s, open loop")
        meter.start()
        found["latency"] = await open_loop(session, prefix, args.rate, args.warmup, seconds)
        say(f"  {line(found['latency'])}\n  CPU: {meter.stop()}")
        _cpu_per_message(
            f"{prefix} {'sustained' if only == 'sustained' else 'latency'}", meter, found["latency"]
        )
    if only in ("both", "max"):
        gc.collect()
        say(f"{prefix} max: {args.window} in flight per sender, {args.warmup:g} s + {args.duration:g} s")
        meter.start()
        found["max"] = await closed_loop(session, prefix, args.window, args.warmup, args.duration)
        say(f"  {line(found['max'])}\n  CPU: {meter.stop()}")
        _cpu_per_message(f"{prefix} max", meter, found["max"])
    for st in found.values():
        for sample in st.samples:
            say(f"  ERROR {sample}")
    return found


async def measure(
    stack: Stack, args: argparse.Namespace
) -> tuple[dict[str, Stats], list[Ceiling], dict[str, socket_close.Closes]]:
    """Every measurement, in order: relay, API at the rate, API sustained, insert ceiling, API max,
    insert ceiling, socket closes."""
    n, results, ceilings = args.pairs, {}, []
    mariadb = (await asyncio.to_thread(server_facts, stack.db_url))[1]
    meter = CpuMeter(stack.pids() | ({"mariadb": mariadb} if mariadb else {}))
    for kind, first in (("same", 1), ("cross", 2 * n + 1)):
        session = Session(layout(first, n, kind == "cross", RELAYS, "relay", stack))
        await session.open()
        if kind == "cross":
            say(f"relay link: probe crossed in {await probe(session, 0, 30):.2f} s")
        for key, st in (await phases(session, f"relay {kind}", args, meter)).items():
            results[f"relay {kind} {key}"] = st
        await session.close()

    say("connecting the probe pairs (replica A -> B and B -> A)")
    probes = Session(layout(4 * n + 1, 2, True, REPLICAS, "api", stack))
    await probes.open()
    for i in range(2):
        say(f"  probe {i}: first message crossed after {await probe(probes, i, 90):.2f} s")
    sessions = {}
    for kind, first in (("same", 1), ("cross", 2 * n + 1)):
        sessions[kind] = Session(layout(first, n, kind == "cross", REPLICAS, "api", stack))
        await sessions[kind].open()
    expected, deadline = 4 * n + 4, time.perf_counter() + 30  # each user has one socket
    while (rows := await asyncio.to_thread(presence_rows, stack.db_url)) < expected:
        if time.perf_counter() > deadline:
            raise SystemExit(f"only {rows} dm_presence rows of {expected} after 30 s")
        await asyncio.sleep(0.2)
    say(f"{4 * n} users connected ({rows} presence rows including the probes)")
    await asyncio.sleep(1)  # the replicas' presence broadcasts heard (a lost one: the next heartbeat)
    for kind in ("same", "cross"):
        st = (await phases(sessions[kind], f"API {kind}-replica", args, meter, "latency"))["latency"]
        results[f"api {kind} latency"] = st
    if args.sustained > 0:
        st = (await phases(sessions["cross"], "API cross-replica", args, meter, "sustained"))["latency"]
        results["api cross sustained"] = st
        say(f"  p99 per minute: {', '.join(f'{v:.1f}' for v in st.by_minute(0.99))} ms")

    nicknames = [nickname(i) for i in range(1, 4 * n + 1)]

    async def ceiling(threads: int, label: str) -> None:
        say(f"insert ceiling {label}: insert_one as fast as it goes, {args.duration:g} s")
        meter.start()
        ceilings.append(
            await asyncio.to_thread(
                dm_ceiling.measure, stack.mongo_url, "dm", threads, args.duration, nicknames, say, label
            )
        )
        say(f"  CPU: {meter.stop()}")

    for threads in (1, args.threads):
        await ceiling(threads, f"before, {threads} thr")
    for kind in ("same", "cross"):
        st = (await phases(sessions[kind], f"API {kind}-replica", args, meter, "max"))["max"]
        results[f"api {kind} max"] = st
    await ceiling(args.threads, f"after, {args.threads} thr")
    for session in (*sessions.values(), probes):
        await session.close()
    closes: dict[str, socket_close.Closes] = {}
    if args.close_reps > 0:
        first = 4 * n + 5
        users = list(range(first, first + socket_close.users_needed(args.close_reps)))
        say(f"socket closes: {args.close_reps} repetitions each of {', '.join(socket_close.KINDS)}")
        closes = await socket_close.measure(stack, users, args.close_reps, say)
    return results, ceilings, closes


def delivery_metrics(stack: Stack) -> str:
    """The replicas' own DM counters (delivered by path, refused) and their feeds' offset gaps (a fetch
    that stepped over a record: read again or given up, ``api.kafka.OffsetGaps``) from ``/metrics``."""
    parts = []
    for replica in REPLICAS:
        text = httpx.get(f"http://127.0.0.1:{stack.ports[metrics_port(replica)]}/metrics", timeout=5).text
        counters = [
            line.replace("sosohappy_dm_", "").replace("sosohappy_kafka_", "").replace("_total", "")
            for line in text.splitlines()
            if line.startswith(
                (
                    "sosohappy_dm_delivered_total",
                    "sosohappy_dm_refused_total",
                    "sosohappy_kafka_offset_gaps_total",
                )
            )
        ]
        parts.append(f"{replica}: " + (", ".join(counters) or "none"))
    return "; ".join(parts)


def report(
    results: dict[str, Stats],
    ceilings: list[Ceiling],
    closes: dict[str, socket_close.Closes],
    args: argparse.Namespace,
) -> None:
    """The summary table: every API figure beside the relay's and the ratio, then the targets."""
    say("")
    say(
        f"summary: {args.pairs} pairs, fetch_max_wait_ms {args.fetch_wait_ms}, window {args.window}, "
        f"Mongo retryable writes {'on (driver default)' if args.retry_writes else 'OFF'}"
    )
    head = f"{'phase':32s} {'msg/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'lost':>5s} {'dup':>4s} {'err':>4s}"
    say(f"{head}  | {'relay msg/s':>11s} {'p50':>6s} {'p99':>6s}  | API/relay rate, p99")
    for kind, label in (("same", "same-replica"), ("cross", "cross-replica")):
        for key, what in (("latency", f"@{args.rate:g}/s"), ("max", f"max ({args.window} in flight)")):
            api, relay = results[f"api {kind} {key}"], results[f"relay {kind} {key}"]
            say(
                f"{label + ' ' + what:32s} {api.rate:7.1f} {api.pct(0.5):7.1f} {api.pct(0.99):7.1f} "
                f"{api.lost:5d} {api.dup:4d} {api.errors:4d}  | {relay.rate:11.1f} {relay.pct(0.5):6.1f} "
                f"{relay.pct(0.99):6.1f}  | {api.rate / relay.rate:5.2f}, {api.pct(0.99) / relay.pct(0.99):6.1f}×"
            )
    say("(relay: two bench.dm_relay processes, same = both ends on one, cross = forwarded over their link;")
    relay_bad = sum(r.lost + r.dup + r.errors for k, r in results.items() if k.startswith("relay"))
    say(f" relay lost + dup + errors: {relay_bad}; relay max is a lower bound: see the bench CPU there)")
    for c in ceilings:
        say(
            f"insert ceiling {c.label:15s} mean {c.rate:6.0f}/s, sustained (2nd half) {c.sustained:6.0f}/s, "
            f"first {c.series[0]:.0f}/s -> last {c.series[-1]:.0f}/s, {c.inserted:,} docs, {c.errors} errors"
        )
    ceiling, after = ceilings[-2].sustained, ceilings[-1].sustained  # right before and right after
    cross_p99 = results["api cross latency"].pct(0.99)
    met = "met" if cross_p99 < 50 else "NOT met"
    say(f"target 1: cross-replica p99 at {args.rate:g}/s = {cross_p99:.1f} ms (< 50 ms): {met}")
    for kind in ("same", "cross"):
        rate = results[f"api {kind} max"].rate
        ratio = rate / ceiling if ceiling else math.nan
        say(
            f"target 2 ({kind}-replica): {rate:.1f}/s / insert ceiling just before {ceiling:.0f}/s = "
            f"{ratio:.2f} (>= 0.7): {'met' if ratio >= 0.7 else 'NOT met'}; vs the ceiling just after "
            f"({after:.0f}/s): {rate / after if after else math.nan:.2f}"
        )
    if (sustained := results.get("api cross sustained")) is not None:
        minutes = sustained.by_minute(0.99)
        p99, growth = sustained.pct(0.99), minutes[-1] / minutes[0] if minutes and minutes[0] else math.nan
        say(
            f"target 3: sustained cross-replica {args.sustained:g} s at {args.rate:g}/s: {sustained.rate:.1f}/s, "
            f"p50 {sustained.pct(0.5):.1f} ms, p99 {p99:.1f} ms (< 50 ms: {'met' if p99 < 50 else 'NOT met'}); "
            f"p99 per minute {', '.join(f'{v:.1f}' for v in minutes)} ms; last / first minute {growth:.2f} "
            f"(<= 1.5: {'met' if growth <= 1.5 else 'NOT met'}); lost {sustained.lost}, dup {sustained.dup}"
        )
    for phase, net in NET_CPU_PER_MESSAGE.items():
        say(f"API CPU per delivered message beyond the idle baseline, {phase}: {net:.2f} ms")
    for phase, ms in CPU_PER_MESSAGE.items():
        say(
            f"target 4: API CPU per delivered message, {phase}: {ms:.2f} ms (<= 1.5: {'met' if ms <= 1.5 else 'NOT met'})"
        )
    for kind, closed in closes.items():
        say(f"target 5: sockets closed after {kind}: {socket_close.line(closed)}")
    if any(st.lost or st.dup or st.errors for st in results.values()):
        say("SOME MESSAGES WERE LOST, DUPLICATED OR REFUSED: see the ERROR lines above")


def arguments() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.dm", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20, help="socket pairs per phase (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="total messages/s of the latency runs")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each run")
    parser.add_argument("--window", type=int, default=4, help="messages in flight per sender at max")
    parser.add_argument("--threads", type=int, default=4, help="threads of the multi-threaded insert run")
    parser.add_argument(
        "--fetch-wait-ms", type=int, default=20, help="replicas' SOSOHAPPY_KAFKA_FETCH_MAX_WAIT_MS"
    )
    parser.add_argument(
        "--retry-writes",
        action="store_true",
        help="the driver's default retryable writes on the Mongo URL (SecantusDB's bookkeeping then ages it)",
    )
    parser.add_argument(
        "--sustained", type=float, default=300.0, help="seconds of the sustained cross-replica run (0: none)"
    )
    parser.add_argument(
        "--close-reps", type=int, default=20, help="repetitions per kind of the socket-close run (0: none)"
    )
    return parser.parse_args()


def main() -> None:
    """Start, seed, measure, print; every process is stopped and the database dropped at the end."""
    args = arguments()
    stop_on_sigterm()
    with throwaway_run("bench-dm-") as run:
        db_url, work = run.db_url, run.work
        closing = socket_close.users_needed(args.close_reps)
        say(
            f"migrating a throwaway database and seeding {4 * args.pairs + 4 + closing} users; logs in {work}"
        )
        migrate(db_url)
        seed(db_url, 4 * args.pairs + 4 + closing)
        socket_close.prepare(db_url, list(range(4 * args.pairs + 5, 4 * args.pairs + 5 + closing)))
        say(f"starting the broker, SecantusDB, 2 API replicas (fetch wait {args.fetch_wait_ms} ms), 2 relays")
        stack = start(work, db_url, args, run.procs)
        say("replicas ready (database, MongoDB, Kafka ok; Temporal deliberately absent)")
        results, ceilings, closes = asyncio.run(measure(stack, args))
        say(f"replica counters: {delivery_metrics(stack)}")
        report(results, ceilings, closes, args)


if __name__ == "__main__":
    main()
