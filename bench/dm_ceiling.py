"""The insert ceiling of ``bench.dm``: how many message documents per second the MongoDB-wire server
takes, with ``insert_one`` of the API's own ``MessageStore`` into ``dm.message`` and its indexes.

The server slows down as it ages: it keeps every retryable write (the driver's default) for 30 minutes,
scans them all on each write and sorts them once there are 10,000 (``secantus/transactions.py``
``_prune_retryable_locked``). So the rate is printed per interval and the sustained figure is the rate
over the second half of the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pymongo import MongoClient

from dm.messages import MessageStore, Party

INTERVAL = 3.0


@dataclass
class Ceiling:
    """One insert run: threads, documents, seconds, per-interval rates."""

    label: str
    threads: int
    inserted: int
    seconds: float
    series: list[float]  # inserts/s per INTERVAL
    sustained: float  # inserts/s over the second half
    errors: int

    @property
    def rate(self) -> float:
        """Mean inserts/s over the whole run."""
        return self.inserted / self.seconds if self.seconds else 0.0


def measure(
    mongo_url: str,
    database: str,
    threads: int,
    seconds: float,
    nicknames: list[str],
    say: Callable[[str], None],
    label: str,
) -> Ceiling:
    """``threads`` threads inserting message-shaped documents as fast as they can for ``seconds``."""
    client: MongoClient = MongoClient(mongo_url, serverSelectionTimeoutMS=5000, tz_aware=False)
    store = MessageStore(client, database)
    store.ensure_indexes()
    count, errors, stop = [0] * threads, [0] * threads, threading.Event()

    def insert(t: int) -> None:
        k = 0
        while not stop.is_set():
            a, b = k % len(nicknames), (k + 1) % len(nicknames)
            sender, receiver = Party(a + 1, nicknames[a]), Party(b + 1, nicknames[b])
            try:
                store.insert(sender, receiver, 2025061512000000, f"{k} {time.perf_counter():.6f}")
                count[t] += 1
            except Exception:  # counted; a failing server shows as errors and a low rate
                errors[t] += 1
            k += 1

    workers = [threading.Thread(target=insert, args=(t,), daemon=True) for t in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    series, marks = [], [(started, 0)]
    while (now := time.perf_counter()) < started + seconds:
        time.sleep(min(INTERVAL, started + seconds - now))
        done, at = sum(count), time.perf_counter()
        series.append((done - marks[-1][1]) / (at - marks[-1][0]))
        marks.append((at, done))
        say(f"  {label}: {at - started:5.1f} s  {series[-1]:7.0f} inserts/s  ({done:,} so far)")
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    half = min(marks[:-1], key=lambda m: abs(m[0] - (started + elapsed / 2)))
    end_at, end_done = marks[-1]
    sustained = (end_done - half[1]) / (end_at - half[0]) if end_at > half[0] else 0.0
    client.close()
    return Ceiling(label, threads, sum(count), elapsed, series, sustained, sum(errors))


def main() -> None:
    """``python -m bench.dm_ceiling [--seconds 120]``: the insert rate of a fresh SecantusDB with the
    driver's default retryable writes, then of another fresh one through the local URL without them
    (``devstack.processes.local_mongo_url``), each printed per interval: the figure behind that URL."""
    import argparse
    import tempfile
    from pathlib import Path

    from bench.cli import stop_on_sigterm
    from devstack.processes import ManagedProcess, free_port, local_mongo_url, mongo_argv

    parser = argparse.ArgumentParser(prog="python -m bench.dm_ceiling", description=main.__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds per configuration")
    args = parser.parse_args()
    stop_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    found = []
    for label in ("retryable writes (driver default)", "retryWrites=false"):
        port = free_port()
        proc = ManagedProcess("mongo", mongo_argv(port, work / str(port)), work / f"mongo-{port}.log").start()
        try:
            proc.wait_for_port(port)
            url = local_mongo_url(port) if "false" in label else f"mongodb://127.0.0.1:{port}"
            names = [f"u{i:06d}" for i in range(1, 41)]
            found.append(measure(url, "dm", 1, args.seconds, names, print, label))
        finally:
            proc.stop()
    for c in found:
        print(
            f"{c.label:34s} mean {c.rate:6.0f}/s, first {c.series[0]:.0f}/s -> last {c.series[-1]:.0f}/s, "
            f"second half {c.sustained:.0f}/s, {c.inserted:,} docs, {c.errors} errors"
        )


if __name__ == "__main__":
    main()
