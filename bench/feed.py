"""Feed listing benchmark: ``findMonthFeed`` and ``findOtherFeed`` against a bare endpoint, at 1× and 10× data.

    .venv/bin/python -m bench.feed [--users 1000] [--days 365] [--scale 10]

Seeds a throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB) with
``--users`` users × ``--days`` days of 2025 entries with categories, images and likes
(``bench.feed_seed``), then measures requests/s, p50 and p99 at 32 concurrent keep-alive clients
(``bench.loadgen``) for the two API routes and for ``bench.feed_baseline``, a bare ASGI app running the
same main SQL query on the same engine, all in the same run. Then it adds users up to ``--scale``
times as many and measures again. Targets: API rate / bare rate >= 0.75 (``RATE_TARGET``); API p50
at 10× <= 1.5 × p50 at 1×. The API gets the Tansu Kafka broker, so its revocation view authenticates without the
database; Temporal and MongoDB point at unused ports (the listings never touch them).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from accounts.tokens import ACCESS, TokenIssuer
from bench import loadgen
from bench.api_stack import throwaway_run
from bench.cli import stop_on_sigterm
from bench.feed_seed import Seeder, account, connect, days_of, nickname, session_id, table_rows
from bench.signin import say
from config import Settings
from storage.db import migrate

ENDPOINTS = ("findMonthFeed", "findOtherFeed")
#: API rate / bare rate the listings must reach at every data size (the performance issue's target).
RATE_TARGET = 0.75
TAGS = {"findMonthFeed": ("month",), "findOtherFeed": ("all days", "one day")}
TARGETS = ("api", "inline", "thread")  # the API, the bare endpoint on the loop, in worker threads
PAGE_SIZE = 21
REQUESTS_PER_RUN = 20_000  # distinct requests cycled through in one measurement


@dataclass
class Phase:
    """One data size and what was measured on it."""

    label: str
    users: int
    rows: dict[str, int]
    results: dict[tuple[str, str], loadgen.Result]
    cpu: dict[tuple[str, str], tuple[float, ...]]  # ms per request: server process, MariaDB, client

    def bare(self, endpoint: str) -> tuple[str, loadgen.Result]:
        """The faster of the two bare-endpoint modes (the baseline the API is compared with)."""
        mode = max(("inline", "thread"), key=lambda m: self.results[(endpoint, m)].rate)
        return mode, self.results[(endpoint, mode)]


class Workload:
    """Requests of the benchmark's mix, for the API and equivalently for the bare endpoint."""

    def __init__(self, settings: Settings, days: int) -> None:
        self.issuer = TokenIssuer(settings)
        self.days = days_of(days)
        self.months = sorted({d // 100 for d in self.days})
        self.headers: dict[int, dict[str, str]] = {}

    def auth(self, user: int) -> dict[str, str]:
        """``Authorization`` and ``email`` headers of seeded user ``user`` (tokens minted once)."""
        if user not in self.headers:
            token = self.issuer.issue(ACCESS, account(user), user, session_id(user), 0)
            self.headers[user] = {"Authorization": f"Bearer {token}", "email": account(user)}
        return self.headers[user]

    def month(self, rng: random.Random, users: int) -> tuple[str, bytes, bytes, bytes]:
        """A user's own month: (tag, API request, bare inline request, bare thread request)."""
        user, month = rng.randint(1, users), rng.choice(self.months)
        date = month * 10**10 + 10**8  # yyyyMM01 00:00:00.00
        api = loadgen.post_multipart(
            "/feed-service/findMonthFeed", {"nickname": nickname(user), "date": date}, self.auth(user)
        )
        params: dict[str, str | int] = {"nickname": nickname(user), "date": date}
        return "month", api, loadgen.get("/inline/month", params), loadgen.get("/thread/month", params)

    def other(self, rng: random.Random, users: int) -> tuple[str, bytes, bytes, bytes]:
        """Everyone's public feeds as a random user: page 0..4, half of them of one day (the API starts a
        page at the mark an earlier request of that login recorded, if any; the bare query counts)."""
        user, page = rng.randint(1, users), rng.randint(0, 4)
        api_params: dict[str, str | int] = {"nickname": nickname(user), "page": page, "size": PAGE_SIZE}
        bare_params: dict[str, str | int] = {"viewer": user, "page": page, "size": PAGE_SIZE}
        tag = "all days"
        if rng.random() < 0.5:
            day, tag = rng.choice(self.days), "one day"
            hms = rng.randint(0, 23) * 10**6 + rng.randint(0, 59) * 10**4 + rng.randint(0, 5999)
            api_params["date"], bare_params["day"] = day * 10**8 + hms, day
        api = loadgen.get("/feed-service/findOtherFeed", api_params, self.auth(user))
        inline, thread = loadgen.get("/inline/other", bare_params), loadgen.get("/thread/other", bare_params)
        return tag, api, inline, thread

    def requests(self, endpoint: str, target: str, seed: int, users: int) -> list[tuple[str, bytes]]:
        """``REQUESTS_PER_RUN`` tagged requests for ``target`` (api, inline or thread) from ``seed``."""
        rng, make = random.Random(seed), self.month if endpoint == "findMonthFeed" else self.other
        index = TARGETS.index(target)
        made = (make(rng, users) for _ in range(REQUESTS_PER_RUN))
        return [(tag, requests[index]) for tag, *requests in made]


def bare_endpoint(port: int) -> list[str]:
    """The argv of ``bench.feed_baseline`` under the API's uvicorn options that matter here."""
    uvicorn = [sys.executable, "-m", "uvicorn", "--http", "h11", "--log-level", "warning", "--no-access-log"]
    return [*uvicorn, "bench.feed_baseline:app", "--port", str(port)]


def check(workload: Workload, ports: dict[str, int], users: int) -> None:
    """A few requests of each kind answer 200 and the API lists the rows the bare query returns."""
    rng = random.Random(7)
    with httpx.Client(timeout=30) as http:
        for _ in range(5):
            user = rng.randint(1, users)
            date = workload.months[0] * 10**10 + 10**8
            api = http.post(
                f"http://127.0.0.1:{ports['api']}/feed-service/findMonthFeed",
                files={"nickname": (None, nickname(user)), "date": (None, str(date))},
                headers=workload.auth(user),
            )
            bare = http.get(
                f"http://127.0.0.1:{ports['bare']}/inline/month",
                params={"nickname": nickname(user), "date": date},
            )
            api.raise_for_status()
            bare.raise_for_status()
            if [f["date"] for f in api.json()] != [row[3] for row in bare.json()]:
                raise SystemExit(f"findMonthFeed and the bare query disagree for {nickname(user)}")
            api = http.get(
                f"http://127.0.0.1:{ports['api']}/feed-service/findOtherFeed",
                # Page 0: a later page starts at the caller's mark (feeds.paging), which earlier requests
                # of the same login recorded, while the bare query counts from the top.
                params={"nickname": nickname(user), "page": 0, "size": PAGE_SIZE},
                headers=workload.auth(user),
            )
            bare = http.get(
                f"http://127.0.0.1:{ports['bare']}/thread/other",
                params={"viewer": user, "page": 0, "size": PAGE_SIZE},
            )
            api.raise_for_status()
            bare.raise_for_status()
            if [f["date"] for f in api.json()["content"]] != [row[3] for row in bare.json()][:PAGE_SIZE]:
                raise SystemExit(f"findOtherFeed and the bare query disagree for {nickname(user)}")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``); NaN when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def server_facts(db_url: str) -> tuple[str, int | None]:
    """The database's size beside the buffer pool size, and the server's pid if it runs here."""
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT SUM(data_length + index_length), @@innodb_buffer_pool_size, @@pid_file "
                "FROM information_schema.tables WHERE table_schema = DATABASE()"
            )
            size, pool, pid_file = cur.fetchone()
    finally:
        conn.close()
    pid = None
    if make_url(db_url).host in ("127.0.0.1", "localhost"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(Path(pid_file).read_text().strip())
    text = f"data + indexes {int(size) / 2**20:,.0f} MiB; server innodb_buffer_pool_size {int(pool) / 2**20:,.0f} MiB"
    return text, pid


def measure(
    label: str,
    workload: Workload,
    ports: dict[str, int],
    pids: dict[str, int],
    users: int,
    args: argparse.Namespace,
) -> Phase:
    """Every endpoint × target at ``args.concurrency`` clients on the current data."""
    phase = Phase(label, users, table_rows(args.db_url), {}, {})
    say(f"data at {label}: " + ", ".join(f"{t} {n:,}" for t, n in phase.rows.items()))
    size, db_pid = server_facts(args.db_url)
    say(f"  {size}")
    check(workload, ports, users)
    for endpoint in ENDPOINTS:
        for target in TARGETS:
            # A fresh sequence per run: no run finds the pages of the previous one's requests cached.
            requests = workload.requests(
                endpoint, target, zlib.crc32(f"{label}/{endpoint}/{target}".encode()), users
            )
            server = "api" if target == "api" else "bare"
            say(
                f"measuring {endpoint} on {server if server == 'api' else 'bare/' + target} at {label}: "
                f"{args.concurrency} clients, {args.warmup:g} s warm-up + {args.duration:g} s"
            )
            before = (cpu_seconds(pids[server]), cpu_seconds(db_pid), time.process_time())
            result = loadgen.run(
                ports[server],
                requests,
                concurrency=args.concurrency,
                warmup=args.warmup,
                duration=args.duration,
            )
            after = (cpu_seconds(pids[server]), cpu_seconds(db_pid), time.process_time())
            cpu = tuple(1000 * (b - a) / max(result.completed, 1) for a, b in zip(before, after, strict=True))
            phase.results[(endpoint, target)], phase.cpu[(endpoint, target)] = result, cpu
            say(
                f"  {figures(result)}  CPU/request: server {cpu[0]:.2f} ms, database {cpu[1]:.2f} ms, client {cpu[2]:.2f} ms"
            )
            for sample in result.samples:
                say(f"  ERROR {sample}")
    return phase


def figures(result: loadgen.Result) -> str:
    """Rate, p50, p99 and errors of one run."""
    errors = f"  {result.errors} ERRORS (invalid)" if result.errors else ""
    return f"{result.rate:7.0f}/s  p50 {result.pct(0.5):6.1f} ms  p99 {result.pct(0.99):6.1f} ms{errors}"


def report(phases: list[Phase]) -> None:
    """Every figure beside its baseline and ratio, then the data-size scaling."""
    say("")
    say(f"{'endpoint':14s} {'data':>4s}  {'API req/s':>9s} {'p50':>6s} {'p99':>6s}  |  "
        f"{'bare req/s':>10s} {'p50':>6s} {'p99':>6s} {'mode':6s}  |  {'API/bare':>8s} (>= {RATE_TARGET})")  # fmt: skip
    valid = not any(r.errors for phase in phases for r in phase.results.values())
    for endpoint in ENDPOINTS:
        for phase in phases:
            api = phase.results[(endpoint, "api")]
            mode, bare = phase.bare(endpoint)
            ratio = api.rate / bare.rate if bare.rate else math.nan
            say(
                f"{endpoint:14s} {phase.label:>4s}  {api.rate:9.0f} {api.pct(0.5):6.1f} {api.pct(0.99):6.1f}  |  "
                f"{bare.rate:10.0f} {bare.pct(0.5):6.1f} {bare.pct(0.99):6.1f} {mode:6s}  |  {ratio:8.2f} "
                f"{'met' if ratio >= RATE_TARGET else 'NOT met'}"
            )
    say("(ms; bare = the faster of the bare endpoint on the event loop (inline) or in threads (thread))")
    first, last = phases[0], phases[-1]
    for endpoint in ENDPOINTS:
        growth = last.results[(endpoint, "api")].pct(0.5) / first.results[(endpoint, "api")].pct(0.5)
        bare_growth = last.bare(endpoint)[1].pct(0.5) / first.bare(endpoint)[1].pct(0.5)
        say(
            f"{endpoint}: API p50 {last.label} / p50 {first.label} = {growth:.2f} (target <= 1.5: "
            f"{'met' if growth <= 1.5 else 'NOT met'}); bare endpoint: {bare_growth:.2f}"
        )
    say("")
    say("by request kind, p50 / p99 ms (API | bare inline | bare thread):")
    for endpoint in ENDPOINTS:
        for phase in phases:
            for tag in TAGS[endpoint]:
                cells = [phase.results[(endpoint, t)] for t in TARGETS]
                say(
                    f"  {endpoint:14s} {phase.label:>4s} {tag:9s} "
                    + " | ".join(f"{r.pct(0.5, tag):7.1f} / {r.pct(0.99, tag):7.1f}" for r in cells)
                )
    say("CPU per request, ms (server process / MariaDB / load generator; API | bare inline | bare thread):")
    for endpoint in ENDPOINTS:
        for phase in phases:
            say(
                f"  {endpoint:14s} {phase.label:>4s} "
                + " | ".join("{:5.2f} / {:5.2f} / {:4.2f}".format(*phase.cpu[(endpoint, t)]) for t in TARGETS)
            )
    if not valid:
        say("SOME REQUESTS FAILED: these figures are not valid (see the ERROR lines above)")


def arguments() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.feed", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="users at 1× (default 1000)")
    parser.add_argument("--days", type=int, default=365, help="days of entries per user from 2025-01-01")
    parser.add_argument("--scale", type=int, default=10, help="the second data size, in multiples")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="unmeasured seconds before each run")
    return parser.parse_args()


def main() -> None:
    """Seed, start, measure at 1× and ``--scale``×, print; the database is dropped at the end."""
    args = arguments()
    stop_on_sigterm()
    with throwaway_run("bench-feed-") as run:
        args.db_url = run.db_url
        say(f"migrating a throwaway database; logs in {run.work}")
        migrate(args.db_url)
        say("starting the Kafka broker, the API and the bare endpoint")
        stack = run.start_api(beside={"bare": bare_endpoint})
        ports, pids = stack.ports, {name: stack.pid(name) for name in ("api", "bare")}
        workload = Workload(Settings(env="test", database_url=args.db_url), args.days)
        seeder = Seeder(args.db_url, args.days, say)
        phases = []
        for factor, first, last in (
            (1, 1, args.users),
            (args.scale, args.users + 1, args.users * args.scale),
        ):
            t0 = time.perf_counter()
            say(f"seeding {factor}× data: users {first}..{last} with {args.days} days of entries each")
            seeder.add_users(first, last)
            say(f"seeded in {time.perf_counter() - t0:.0f} s")
            phases.append(measure(f"{factor}×", workload, ports, pids, last, args))
        report(phases)


if __name__ == "__main__":
    main()
