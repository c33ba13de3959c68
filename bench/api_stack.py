"""The frame of the benchmarks that run the API (``bench.feed``, ``bench.paging``, ``bench.images``,
``bench.dm``): a work directory and a throwaway MySQL database for the run, torn down at its end, and
for the HTTP ones one API process on them.

The API is ``python -m api.serve`` as the image runs it, with the Tansu broker (its revocation view
then authenticates without the database) and Temporal and MongoDB pointed at unused ports (listings
and images never touch them). It counts as started once its revocation view has caught up, read on
its metrics port where Prometheus would. A benchmark adds the processes it compares the API with
(a bare endpoint, a static-file server) beside it.
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.signin import say, throwaway_mysql
from devstack.processes import ManagedProcess, broker_argv, free_port, local_mongo_url
from temporal.codec import generate_key_entry

#: What the API reports on its metrics port once its revocation view has caught up with the broker.
READY = "sosohappy_revocation_view_ready 1.0"


@dataclass(frozen=True)
class Stack:
    """The started processes by name and the ports they listen on (``api``, ``api-metrics``, ``kafka``
    and one per side process)."""

    procs: dict[str, ManagedProcess]
    ports: dict[str, int]

    def url(self, name: str = "api") -> str:
        """``http://127.0.0.1:<port>`` of ``name``."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def pid(self, name: str = "api") -> int:
        """The operating-system process id of ``name`` (0 when it is not running)."""
        proc = self.procs[name].proc
        return proc.pid if proc is not None else 0


@dataclass
class Run:
    """One benchmark run: its work directory (logs), its throwaway database and what it started, by
    name (a benchmark that starts its own processes puts them here too, so the end stops them)."""

    work: Path
    db_url: str
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def start_api(
        self,
        env: Mapping[str, str] | None = None,
        beside: Mapping[str, Callable[[int], list[str]]] | None = None,
    ) -> Stack:
        """The broker, the API (its environment plus ``env``) and each side process of ``beside``
        (name → its argv for the port it is given), all listening, the API's revocation view caught up."""
        beside = beside or {}
        ports = {name: free_port() for name in ("kafka", "api", "api-metrics", "temporal", "mongo", *beside)}
        api_env = {
            "SOSOHAPPY_ENV": "test",
            "SOSOHAPPY_DATABASE_URL": self.db_url,
            "SOSOHAPPY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
            "SOSOHAPPY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",  # nothing listens: no workflow
            "SOSOHAPPY_MONGO_URL": local_mongo_url(ports["mongo"]),  # nor here: no DM
            "SOSOHAPPY_WORKER_METRICS_PORT": "0",
            "SOSOHAPPY_API_PORT": str(ports["api"]),
            "SOSOHAPPY_API_METRICS_PORT": str(ports["api-metrics"]),
            "SOSOHAPPY_RELAY_KEYS": generate_key_entry("bench-relay"),
            **(env or {}),
        }
        specs = [
            ("kafka", broker_argv(ports["kafka"])),
            ("api", [sys.executable, "-m", "api.serve"]),
            *((name, argv(ports[name])) for name, argv in beside.items()),
        ]
        started: dict[str, ManagedProcess] = {}
        for name, argv in specs:
            proc = ManagedProcess(name, argv, self.work / f"{name}.log", env=api_env).start()
            self.procs[name] = started[name] = proc
            proc.wait_for_port(ports[name], timeout=90)
        metrics = f"http://127.0.0.1:{ports['api-metrics']}/metrics"
        started["api"].wait_until(lambda: READY in _fetch(metrics), 60, "revocation view caught up")
        return Stack(started, ports)


@contextmanager
def throwaway_run(prefix: str) -> Iterator[Run]:
    """A run with a fresh work directory and database; at its end every process it started is stopped,
    the database dropped and the wall time printed, whatever happened."""
    started = time.perf_counter()
    db_url, drop_db = throwaway_mysql()
    run = Run(Path(tempfile.mkdtemp(prefix=prefix)), db_url)
    try:
        yield run
    finally:
        for proc in reversed(run.procs.values()):
            proc.stop()
        drop_db()
        say(f"total wall time {time.perf_counter() - started:.0f} s")


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())
