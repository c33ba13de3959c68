"""Deep-page benchmark: ``findOtherFeed`` page 0 against a deep page reached by walking the marks.

    .venv/bin/python -m bench.paging [--public 100000] [--page 2000] [--samples 300]

Seeds a throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB) by bulk SQL
(``bench.feed_seed``: users × 365 days of entries with categories, images and likes, 80% public) until it
holds at least ``--public`` public entries, starts the Kafka broker and the API (``python -m api.serve``)
on free ports, then ``measure_deep_page`` over real HTTP as one signed-in user: it walks pages 0, 1, …
to ``--page`` as the app would (each page records its end), then asks for page 0 and page ``--page``
alternately, one request at a time on one keep-alive connection, and prints p50/p99 of each and the
ratio (target: deep p50 ≤ 1.5 × first p50). For contrast it also times the page query itself on the
API's statements in this process: page ``--page`` from its mark and counted from the top (OFFSET).

``measure_deep_page`` only needs a running API with enough public entries, so another benchmark
(``bench.images``) can call it on its own stack.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from accounts.tokens import ACCESS, TokenIssuer
from bench.api_stack import throwaway_run
from bench.cli import stop_on_sigterm
from bench.feed_seed import Seeder, account, nickname, session_id, table_rows
from bench.signin import say
from config import Settings
from feeds.paging import Position, Seek
from storage import feeds
from storage.db import create_db_engine, migrate

PAGE_SIZE = 21  # what the app always asks for (CLIENT_CONTRACT §3.13)
TARGET = 1.5
DAYS = 365
PUBLIC_SHARE = 0.8  # bench.feed_seed.PUBLIC_PERCENT


@dataclass(frozen=True)
class DeepPage:
    """Latencies (ms) of page 0 and of page ``page``, each asked ``samples`` times."""

    page: int
    samples: int
    walk_seconds: float
    first: list[float]
    deep: list[float]

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        """The ``q`` quantile (nearest rank) of ``values``."""
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def ratio(self) -> float:
        """Deep p50 / first p50."""
        return self.pct(self.deep, 0.5) / self.pct(self.first, 0.5)

    def lines(self) -> list[str]:
        """The figures as printed: both pages' p50/p99, and the ratio against the target."""
        p = self.pct
        met = "met" if self.ratio <= TARGET else "NOT met"
        return [
            f"findOtherFeed page {0:<5d}  p50 {p(self.first, 0.5):6.2f} ms  p99 {p(self.first, 0.99):6.2f} ms"
            f"  ({self.samples} requests)",
            f"findOtherFeed page {self.page:<5d}  p50 {p(self.deep, 0.5):6.2f} ms  p99 {p(self.deep, 0.99):6.2f} ms"
            f"  ({self.samples} requests, reached by walking {self.page} pages in {self.walk_seconds:.1f} s)",
            f"deep / first: p50 {self.ratio:.2f}, p99 {p(self.deep, 0.99) / p(self.first, 0.99):.2f}"
            f"  (target p50 <= {TARGET}: {met})",
        ]


def measure_deep_page(
    api_url: str,
    headers: dict[str, str],
    viewer_nickname: str,
    *,
    page: int = 2000,
    samples: int = 300,
    report: Callable[[str], None] = say,
) -> DeepPage:
    """Walk ``findOtherFeed`` (the "total" sort, 21 a page) to ``page`` as the app does, then time page 0
    and page ``page`` alternately ``samples`` times each over one keep-alive connection; print the
    figures with ``report`` and return them. ``headers`` authenticate ``viewer_nickname``; the listing
    must hold more than ``(page + 1) × 21`` entries the viewer can see."""
    params: dict[str, str | int] = {"nickname": viewer_nickname, "size": PAGE_SIZE}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http:

        def ask(number: int) -> tuple[float, dict]:
            t0 = time.perf_counter()
            resp = http.get("/feed-service/findOtherFeed", params={**params, "page": number})
            elapsed = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            body = resp.json()
            if body["numberOfElements"] != PAGE_SIZE or body["isLast"]:
                raise SystemExit(
                    f"page {number} is not a full page: seed more entries ({body['numberOfElements']})"
                )
            return elapsed, body

        report(f"walking findOtherFeed pages 0..{page - 1} as {viewer_nickname} (each page records its end)")
        t0 = time.perf_counter()
        newest_last = None
        for number in range(page):
            _, body = ask(number)
            dates = [f["date"] for f in body["content"]]
            if newest_last is not None and dates[0] > newest_last:
                raise SystemExit(f"page {number} starts above the page before it")
            newest_last = dates[-1]
            if number and number % 500 == 0:
                report(f"  page {number} after {time.perf_counter() - t0:.1f} s")
        walk = time.perf_counter() - t0
        report(f"measuring page 0 and page {page} alternately, {samples} requests each, one at a time")
        first, deep = [], []
        for _ in range(samples):
            elapsed, _ = ask(0)
            first.append(elapsed)
            elapsed, body = ask(page)
            deep.append(elapsed)
            if body["content"][0]["date"] > (newest_last or 0):
                raise SystemExit(f"page {page} does not follow page {page - 1}")
    result = DeepPage(page, samples, walk, first, deep)
    for line in result.lines():
        report(line)
    return result


def statement_times(
    db_url: str, viewer: int, page: int, mark: Position, rounds: int = 20
) -> dict[str, float]:
    """Median ms of the page query itself (this process, the API's statements): the first page, page
    ``page`` after ``mark``, and page ``page`` counted from the top as OFFSET would."""
    engine = create_db_engine(db_url, pool_size=1)
    seeks = {"page 0": feeds.FIRST_PAGE, f"page {page} from its mark": Seek(mark, 0)}
    seeks[f"page {page} by OFFSET"] = Seek(None, page)
    out = {}
    try:
        for name, seek in seeks.items():
            times = []
            for _ in range(rounds):
                with engine.connect() as conn:
                    t0 = time.perf_counter()
                    feeds.find_public_page(conn, viewer, None, PAGE_SIZE, seek)
                    times.append((time.perf_counter() - t0) * 1000)
            out[name] = statistics.median(times)
    finally:
        engine.dispose()
    return out


def _mark(db_url: str, login: str, page: int) -> Position:
    engine = create_db_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT date, feed_id FROM feed_page_marks WHERE login_id = %s AND listing = 'all' AND page = %s",
                (login, page),
            ).one()
            return Position(int(row[0]), int(row[1]))
    finally:
        engine.dispose()


#: The API without its sign-in worker or request lines: the page, not the log, is measured.
QUIET_API = {"SOSOHAPPY_API_SIGN_IN_WORKER": "false", "SOSOHAPPY_LOG_LEVEL": "WARNING"}


def run(public: int, page: int, samples: int) -> DeepPage:
    """Seed, start, measure, print; the database is dropped at the end."""
    with throwaway_run("bench-paging-") as frame:
        db_url = frame.db_url
        say(f"migrating a throwaway database; logs in {frame.work}")
        migrate(db_url)
        users = math.ceil(public / (DAYS * PUBLIC_SHARE))
        t0 = time.perf_counter()
        say(
            f"seeding {users} users × {DAYS} days of entries (about {users * DAYS * PUBLIC_SHARE:,.0f} public)"
        )
        Seeder(db_url, DAYS, say).add_users(1, users)
        say(
            f"seeded in {time.perf_counter() - t0:.0f} s: "
            + ", ".join(f"{t} {n:,}" for t, n in table_rows(db_url).items())
        )
        api_url = frame.start_api(env=QUIET_API).url()
        viewer = 1  # blocks nobody (bench.feed_seed: every tenth user blocks two others)
        token = TokenIssuer(Settings(env="test")).issue(
            ACCESS, account(viewer), viewer, session_id(viewer), 0
        )
        headers = {"Authorization": f"Bearer {token}", "email": account(viewer)}
        result = measure_deep_page(api_url, headers, nickname(viewer), page=page, samples=samples)
        times = statement_times(db_url, viewer, page, _mark(db_url, session_id(viewer), page - 1))
        say(
            "the page query alone, median of 20 (this process, the API's statements): "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in times.items())
        )
        return result


def main() -> None:
    """``python -m bench.paging``."""
    parser = argparse.ArgumentParser(prog="python -m bench.paging", description=__doc__.split("\n")[0])
    parser.add_argument("--public", type=int, default=100_000, help="public entries to seed at least")
    parser.add_argument("--page", type=int, default=2000, help="the deep page (walked to first)")
    parser.add_argument("--samples", type=int, default=300, help="requests of each page measured")
    args = parser.parse_args()
    stop_on_sigterm()
    run(args.public, args.page, args.samples)


if __name__ == "__main__":
    main()
