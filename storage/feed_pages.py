"""The paged listings as a login walks them: ``findOtherFeed`` and ``findUserFeed`` page by position.

Each page is read from where the page before it ended (its mark in ``feed_page_marks``, keyed by login,
listing and page number; ``feeds.paging`` has the rules), and when more follows, where this page ended
is recorded for the next one, in the caller's transaction (unless the page's own mark, read with the
one it starts from, already says so: re-reading a page writes nothing). Two devices of one user are two logins, so
each walks its own pages. A mark is a primary-key range read and, when it changes, a primary-key upsert; the page itself is a
range scan from the mark on the listing's index, so page 2000 reads as many rows as page 0.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, insert, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from feeds.paging import (
    Listing,
    Mark,
    Position,
    Seek,
    is_current,
    lowest_useful_page,
    other_feed,
    seek_for,
    user_feed,
)
from storage import feeds
from storage.feeds import FeedView
from storage.models import FeedPageMark


@dataclass(frozen=True)
class ListingPage:
    """A page of a listing: its feeds, whether it is the last, the viewer's nickname when the page query
    read it (``findOtherFeed``'s, on a page with rows), and whether the page was beyond reach (answered
    as an empty last page without reading the listing)."""

    feeds: list[FeedView]
    is_last: bool
    viewer_nickname: str | None = None
    beyond_reach: bool = False


BEYOND_REACH = ListingPage([], True, None, beyond_reach=True)


@dataclass(frozen=True)
class Viewer:
    """Who pages: the user (what they may see) and their login (whose marks they walk)."""

    user_id: int
    login_id: str


@dataclass(frozen=True)
class _Marks:
    """What a login has recorded around a page: the page's own mark and the nearest one below it that
    can still serve it."""

    own: Mark | None
    nearest: Mark | None


_KEY = ("login_id", "listing", "scope", "page")
_VALUES = ("date", "feed_id", "recorded_at")


@functools.cache
def _statements(dialect: str) -> tuple[Select[Any], Any]:
    """The marks' read (a page's own mark and the nearest below it) and upsert for ``dialect``, built
    once with bound parameters: building them per request cost as much Python as running them."""
    columns = FeedPageMark.__table__.c
    read = (
        select(columns.page, columns.date, columns.feed_id, columns.recorded_at)
        .where(
            columns.login_id == bindparam("login_id"),
            columns.listing == bindparam("listing"),
            columns.scope == bindparam("scope"),
            columns.page <= bindparam("page"),
            columns.page >= bindparam("lowest"),
        )
        .order_by(columns.page.desc())
        .limit(2)
    )
    binds = {k: bindparam(k, type_=columns[k].type) for k in _KEY + _VALUES}
    update = {k: binds[k] for k in _VALUES}
    if dialect in ("mysql", "mariadb"):
        upsert: Any = mysql_insert(FeedPageMark).values(binds).on_duplicate_key_update(update)
    elif dialect == "sqlite":
        upsert = sqlite_insert(FeedPageMark).values(binds)
        upsert = upsert.on_conflict_do_update(index_elements=list(_KEY), set_=update)
    else:  # pragma: no cover - the project runs on MySQL/MariaDB and SQLite only
        upsert = insert(FeedPageMark).values(binds)
    return read, upsert


def _key(login_id: str, listing: Listing, page: int) -> dict[str, Any]:
    """The primary key of ``page``'s mark (``_KEY``) as the statements' parameters."""
    return dict(zip(_KEY, (login_id, listing.kind, listing.scope, page), strict=True))


def _marks(conn: Connection, login_id: str, listing: Listing, page: int) -> _Marks:
    """``page``'s own mark and the nearest useful one below it (one primary-key range, two rows)."""
    read, _ = _statements(conn.dialect.name)
    rows = conn.execute(read, {**_key(login_id, listing, page), "lowest": lowest_useful_page(page)}).all()
    marks = [Mark(row[0], Position(row[1], row[2]), row[3]) for row in rows]
    own = next((mark for mark in marks if mark.page == page), None)
    nearest = next((mark for mark in marks if mark.page < page), None)
    return _Marks(own, nearest)


def record_mark(
    conn: Connection, login_id: str, listing: Listing, page: int, position: Position, now: datetime
) -> None:
    """Page ``page`` of ``listing`` ended at ``position`` for ``login_id`` (replacing an older mark)."""
    _, upsert = _statements(conn.dialect.name)
    values = {"date": position.date, "feed_id": position.feed_id, "recorded_at": now}
    conn.execute(upsert, {**_key(login_id, listing, page), **values})


def _start(marks: _Marks, page: int) -> Seek | None:
    """Where ``page`` starts: the top for page 0, else after the nearest mark below it; ``None`` when
    it is beyond reach."""
    if page == 0:
        return feeds.FIRST_PAGE
    return seek_for(page, marks.nearest)


def _end(content: list[FeedView], is_last: bool) -> Position | None:
    """Where a page ended when another page follows it; ``None`` for an empty or last page (a last page
    needs no successor, so nothing is recorded)."""
    return Position(content[-1].date, content[-1].id) if content and not is_last else None


def _remember(
    conn: Connection,
    viewer: Viewer,
    listing: Listing,
    page: int,
    marks: _Marks,
    end: Position | None,
    now: datetime,
) -> None:
    """Record ``end`` as ``page``'s mark, unless there is none or the mark already says so
    (``feeds.paging.is_current``)."""
    if end is not None and not is_current(marks.own, end, now):
        record_mark(conn, viewer.login_id, listing, page, end, now)


def public_page(
    conn: Connection, viewer: Viewer, day: int | None, page: int, size: int, now: datetime
) -> ListingPage:
    """Page ``page`` of the public feed (of ``day``, or every day) as ``viewer`` sees it; an empty last
    page when it is beyond reach (``feeds.paging``). Run it in a transaction: it may record a mark."""
    listing = other_feed(day)
    marks = _marks(conn, viewer.login_id, listing, page)
    seek = _start(marks, page)
    if seek is None:
        return BEYOND_REACH
    found = feeds.find_public_page(conn, viewer.user_id, day, size, seek)
    _remember(conn, viewer, listing, page, marks, _end(found.feeds, found.is_last), now)
    return ListingPage(found.feeds, found.is_last, found.viewer_nickname)


def author_page(
    conn: Connection, viewer: Viewer, author_id: int, page: int, size: int, now: datetime
) -> ListingPage:
    """Page ``page`` of ``author_id``'s public feed as ``viewer`` sees it; an empty last page when it is
    beyond reach. Run it in a transaction: it may record a mark."""
    listing = user_feed(author_id)
    marks = _marks(conn, viewer.login_id, listing, page)
    seek = _start(marks, page)
    if seek is None:
        return BEYOND_REACH
    content, is_last = feeds.find_author_page(conn, author_id, viewer.user_id, size, seek)
    _remember(conn, viewer, listing, page, marks, _end(content, is_last), now)
    return ListingPage(content, is_last)
