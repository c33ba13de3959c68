"""What a page costs on MariaDB, counted rather than timed: the handler reads of a deep page reached by
walking the marks equal the first page's (plus the mark's primary-key read), far below the same page
counted from the top (OFFSET's cost); and the plans are ranges on each listing's own index with no sort.

A database of its own (bulk-inserted: 40 authors × 60 days, some private, one author blocked), so the
counts depend on nothing another test wrote."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, insert, text

from feeds.paging import Position, Seek
from storage import feed_pages, feeds
from storage.db import create_db_engine
from storage.feed_pages import ListingPage, Viewer
from storage.models import Block, Feed, FeedCategory, User
from tests.fixtures.databases import scratch_mysql_database

NOW = datetime(2024, 1, 20)
AUTHORS, DAYS, SIZE, DEEP = 40, 60, 21, 60
VIEWER, BLOCKED, AUTHOR = 1, 2, 3
DAY = 20240215


def _date(day_index: int, author: int) -> int:
    month, day = divmod(day_index, 28)
    return (2024 * 10**4 + (month + 1) * 100 + day + 1) * 10**8 + author * 10**4


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """A MariaDB database of its own with 2,400 entries (every fifth private), their categories, and a
    viewer who blocked one author."""
    with scratch_mysql_database("sosohappy_paging") as url:
        engine = create_db_engine(url)
        users = [
            {
                "id": i,
                "account_email": f"{uuid.uuid4().hex}@x.dev+kakao",
                "provider": "kakao",
                "nickname": f"p{i}",
                "introduction": "",
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(1, AUTHORS + 1)
        ]
        entries = [
            {
                "id": author * 1000 + d,
                "user_id": author,
                "day": _date(d, author) // 10**8,
                "date": _date(d, author),
                "weather": "sunny",
                "happiness": 3,
                "text": "t",
                "is_public": (author + d) % 5 != 0,
                "created_at": NOW,
                "updated_at": NOW,
            }
            for author in range(1, AUTHORS + 1)
            for d in range(DAYS)
        ]
        with engine.begin() as conn:
            conn.execute(insert(User), users)
            conn.execute(insert(Feed), entries)
            conn.execute(
                insert(FeedCategory),
                [{"feed_id": e["id"], "position": 0, "category": "coffee"} for e in entries],
            )
            conn.execute(insert(Block).values(blocker_id=VIEWER, blocked_id=BLOCKED, created_at=NOW))
            conn.execute(text("ANALYZE TABLE feeds, feed_categories, users"))
        yield engine
        engine.dispose()


def _handler_reads(conn: Connection) -> int:
    rows = conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Handler_read%%'").all()
    return sum(int(value) for _, value in rows)


def _cost(engine: Engine, read: Callable[[Connection], Any]) -> int:
    """The handler reads (index and row reads of every kind) of ``read`` in one transaction."""
    with engine.begin() as conn:
        before = _handler_reads(conn)
        read(conn)
        after = _handler_reads(conn)
        itself = _handler_reads(conn) - after  # what reading the status adds by itself
        return after - before - itself


LISTINGS: dict[str, Callable[[Connection, Viewer, int], ListingPage]] = {
    "total": lambda conn, viewer, n: feed_pages.public_page(conn, viewer, None, n, SIZE, NOW),
    "today": lambda conn, viewer, n: feed_pages.public_page(conn, viewer, DAY, n, 1, NOW),
    "user": lambda conn, viewer, n: feed_pages.author_page(conn, viewer, AUTHOR, n, 1, NOW),
}


@pytest.mark.parametrize("listing", LISTINGS)
def test_a_deep_page_reads_what_the_first_page_reads(engine: Engine, listing: str) -> None:
    read = LISTINGS[listing]
    viewer = Viewer(VIEWER, str(uuid.uuid4()))
    # "today" and "user" hold fewer entries (one per author, one per day): pages of one entry there.
    deep = {"total": DEEP, "today": 25, "user": 40}[listing]
    for number in range(deep):  # the app's walk: every page records its end
        with engine.begin() as conn:
            assert read(conn, viewer, number).feeds
    first = _cost(engine, lambda conn: read(conn, viewer, 0))
    deep_cost = _cost(engine, lambda conn: read(conn, viewer, deep))
    # Equal but for the predecessor's mark (a primary-key read) and where the page falls: a blocked
    # author's entry skipped more or less is one row's reads.
    size = SIZE if listing == "total" else 1
    one_row = first // (size + 1)
    assert abs(deep_cost - first) <= one_row + 2, (first, deep_cost)
    # What OFFSET would read for the same page: every row above it again.
    day = DAY if listing == "today" else None

    def counted_from_the_top(conn: Connection) -> None:
        if listing == "user":
            feeds.find_author_page(conn, AUTHOR, VIEWER, size, Seek(None, deep))
        else:
            feeds.find_public_page(conn, VIEWER, day, size, Seek(None, deep))

    assert _cost(engine, counted_from_the_top) > deep_cost + deep * size


def _plan(conn: Connection, statement: Any, params: dict[str, Any]) -> dict[str, Any]:
    """MariaDB's plan of ``statement`` for the ``feeds`` table (EXPLAIN of the SQL it really sends)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, parameters: Any, _ctx: Any, _many: bool) -> None:
        sent.append((sql, parameters))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        conn.execute(statement, params).all()
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    result = conn.exec_driver_sql("EXPLAIN " + sent[0][0], sent[0][1])
    rows = [dict(zip(result.keys(), row, strict=True)) for row in result]
    return next(row for row in rows if row["table"] == "feeds")


MIDDLE = Seek(Position(_date(DAYS // 2, 20), 20 * 1000 + DAYS // 2), 0)


@pytest.mark.parametrize(
    ("name", "query", "index"),
    [
        ("total", lambda c, s: feeds.public_page_query(c, VIEWER, None, SIZE, s), "ix_feeds_is_public_date"),
        (
            "today",
            lambda c, s: feeds.public_page_query(c, VIEWER, DAY, SIZE, s),
            "ix_feeds_day_is_public_date",
        ),
        ("user", lambda c, s: feeds.author_page_query(c, AUTHOR, VIEWER, SIZE, s), "ix_feeds_user_id_date"),
    ],
)
def test_pages_are_index_ranges_without_a_sort(
    engine: Engine, name: str, query: Callable[[Connection, Seek], Any], index: str
) -> None:
    with engine.connect() as conn:
        first = _plan(conn, *query(conn, feeds.FIRST_PAGE))
        after = _plan(conn, *query(conn, MIDDLE))
    for plan in (first, after):
        assert plan["key"] == index, (name, plan)
        assert "filesort" not in (plan["Extra"] or "") and "temporary" not in (plan["Extra"] or ""), plan
    assert first["type"] in ("ref", "range"), first
    # From a position: a range starting there (on the index and its implicit trailing id), not the
    # whole prefix read from its newest row.
    assert after["type"] == "range", after
