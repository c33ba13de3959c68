"""The Temporal dev server's SQLite settings, measured: no-op workflows at 20 concurrent against dev
servers started with the CLI's defaults, with the project's pragmas (``temporal.devserver``) and with
alternatives, one after the other in one run.

    .venv/bin/python -m bench.devserver --n 300

Each server gets a fresh state file in a temp folder (and one runs in memory, for reference). On the
tuned server it also measures the shape sign-in uses: a local activity, started eagerly on a worker of
the same client (``request_eager_start``), at 20 concurrent and one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench.cli import stop_on_sigterm
from bench.noop_workflow import NoopLocalWorkflow, NoopWorkflow, noop_activity
from config import Settings
from devstack.bytecode import compile_project
from devstack.processes import ManagedProcess, free_port
from temporal.client import connect
from temporal.devserver import SQLITE_PRAGMAS, start_dev_args, wait_until_serving

#: name -> (state file?, pragmas); the first is the CLI's defaults, the second the project's.
VARIANTS: dict[str, tuple[bool, Sequence[str]]] = {
    "default": (True, ()),
    "configured": (True, SQLITE_PRAGMAS),
    "wal+synchronous=off": (True, ("journal_mode=wal", "synchronous=off")),
    "in-memory": (False, ()),
}


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (seconds) in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    """Rate and latencies of one measured batch."""

    rate: float
    latencies: list[float]

    def line(self) -> str:
        """``rate/s p50 p99`` for a table row."""
        return f"{self.rate:7.1f}/s  p50 {pct(self.latencies, 0.5):7.1f} ms  p99 {pct(self.latencies, 0.99):7.1f} ms"


async def load(n: int, concurrency: int, call: Callable[[int], Awaitable[object]]) -> Figures:
    """Run ``call(i)`` for i < n with ``concurrency`` in flight."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def client() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Figures(n / (time.perf_counter() - t0), latencies)


@asynccontextmanager
async def dev_server(
    work: Path, name: str, *, db_file: bool = True, pragmas: Sequence[str] = SQLITE_PRAGMAS
) -> AsyncIterator[Client]:
    """A dev server of its own (fresh state file under ``work``) and a client of it."""
    port = free_port()
    slug = "".join(c if c.isalnum() else "-" for c in name)
    argv = start_dev_args(
        port=port, ui_port=None, db_file=work / f"{slug}.db" if db_file else None, sqlite_pragmas=pragmas
    )
    server = ManagedProcess(f"temporal-{slug}", argv, work / f"temporal-{slug}.log").start()
    try:
        server.wait_for_port(port, timeout=90)
        await asyncio.to_thread(wait_until_serving, f"127.0.0.1:{port}")
        yield await connect(Settings(env="test", temporal_address=f"127.0.0.1:{port}"))
    finally:
        server.stop()


async def noop_ceiling(
    client: Client, n: int, concurrency: int, *, local: bool = False, eager: bool = False
) -> Figures:
    """N no-op workflows (one activity, or one local activity) at ``concurrency`` on a worker of
    ``client``; a few first, unmeasured, so every figure is of a warm server."""
    workflow = NoopLocalWorkflow if local else NoopWorkflow
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    with ThreadPoolExecutor(max(concurrency, 4)) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[workflow],
            activities=[noop_activity],
            activity_executor=executor,
        ):

            async def one(i: int) -> object:
                return await client.execute_workflow(
                    workflow.run, i, id=f"{queue}-{i}", task_queue=queue, request_eager_start=eager
                )

            await load(10, 5, lambda i: one(-1 - i))
            return await load(n, concurrency, one)


async def run(n: int) -> None:
    """Measure every variant, then print the table."""
    work = Path(tempfile.mkdtemp(prefix="bench-devserver-"))
    rows: dict[str, Figures] = {}

    def row(name: str, figures: Figures) -> None:
        rows[name] = figures
        say(f"  {name:40s} {figures.line()}")  # as it comes: a run cut short still has its figures

    for name, (db_file, pragmas) in VARIANTS.items():
        say(f"{name}: {n} no-op workflows with one activity at 20 concurrent")
        async with dev_server(work, name, db_file=db_file, pragmas=pragmas) as client:
            row(name, await noop_ceiling(client, n, 20))
            if name == "configured":
                say(f"{name}: the same with a local activity and eager start, at 20 and at 1")
                row(
                    "configured, local activity, eager @20",
                    await noop_ceiling(client, n, 20, local=True, eager=True),
                )
                row("configured, activity @1", await noop_ceiling(client, n // 3, 1))
                row(
                    "configured, local activity, eager @1",
                    await noop_ceiling(client, n // 3, 1, local=True, eager=True),
                )
    say("")
    say(f"no-op workflows (n={n}; logs in {work}):")
    for name, figures in rows.items():
        say(f"  {name:40s} {figures.line()}")
    base = rows["default"].rate
    for name in ("configured", "wal+synchronous=off", "in-memory"):
        say(f"  {name} / default = {rows[name].rate / base:.2f}")
    single = statistics.median(rows["configured, activity @1"].latencies)
    eager = statistics.median(rows["configured, local activity, eager @1"].latencies)
    say(f"  uncontended median: {1000 * single:.1f} ms with an activity, {1000 * eager:.1f} ms local + eager")


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.devserver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=300, help="no-op workflows per server (default 300)")
    n = parser.parse_args().n
    stop_on_sigterm()
    compile_project()  # the workers here re-import workflow modules per run (devstack.bytecode)
    asyncio.run(run(n))


if __name__ == "__main__":
    main()
