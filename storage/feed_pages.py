"""The paged listings as a login walks them: ``findOtherFeed`` and ``findUserFeed`` page by position.

Each page is read from where the page before it ended (its mark in ``feed_page_marks``, keyed by login,
listing and page number; ``feeds.paging`` has the rules), and when more follows, where this page ended
is recorded for the next one, in the caller's transaction. Two devices of one user are two logins, so
each walks its own pages. A mark is a primary-key read and a primary-key upsert; the page itself is a
range scan from the mark on the listing's index, so page 2000 reads as many rows as page 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from feeds.paging import (
    Listing,
    Mark,
    Position,
    Seek,
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


def nearest_mark(conn: Connection, login_id: str, listing: Listing, page: int) -> Mark | None:
    """The mark of the highest page below ``page`` that can still serve it (one primary-key range)."""
    row = conn.execute(
        select(FeedPageMark.page, FeedPageMark.date, FeedPageMark.feed_id)
        .where(
            FeedPageMark.login_id == login_id,
            FeedPageMark.listing == listing.kind,
            FeedPageMark.scope == listing.scope,
            FeedPageMark.page < page,
            FeedPageMark.page >= lowest_useful_page(page),
        )
        .order_by(FeedPageMark.page.desc())
        .limit(1)
    ).first()
    return Mark(row[0], Position(row[1], row[2])) if row is not None else None


def record_mark(
    conn: Connection, login_id: str, listing: Listing, page: int, position: Position, now: datetime
) -> None:
    """Page ``page`` of ``listing`` ended at ``position`` for ``login_id`` (replacing an older mark)."""
    key = {"login_id": login_id, "listing": listing.kind, "scope": listing.scope, "page": page}
    values = {"date": position.date, "feed_id": position.feed_id, "recorded_at": now}
    dialect = conn.dialect.name
    if dialect == "mysql":
        upsert = mysql_insert(FeedPageMark).values(**key, **values)
        conn.execute(upsert.on_duplicate_key_update(**values))
    elif dialect == "sqlite":
        lite = sqlite_insert(FeedPageMark).values(**key, **values)
        conn.execute(lite.on_conflict_do_update(index_elements=list(key), set_=values))
    else:  # pragma: no cover - the project runs on MySQL/MariaDB and SQLite only
        conn.execute(insert(FeedPageMark).values(**key, **values))


def _start(conn: Connection, viewer: Viewer, listing: Listing, page: int) -> Seek | None:
    """Where ``page`` starts for ``viewer``: the top for page 0, else after the nearest mark below it;
    ``None`` when it is beyond reach."""
    if page == 0:
        return feeds.FIRST_PAGE
    return seek_for(page, nearest_mark(conn, viewer.login_id, listing, page))


def _remember(
    conn: Connection,
    viewer: Viewer,
    listing: Listing,
    page: int,
    content: list[FeedView],
    is_last: bool,
    now: datetime,
) -> None:
    """Record where ``page`` ended when another page follows (a last page needs no successor)."""
    if content and not is_last:
        last = content[-1]
        record_mark(conn, viewer.login_id, listing, page, Position(last.date, last.id), now)


def public_page(
    conn: Connection, viewer: Viewer, day: int | None, page: int, size: int, now: datetime
) -> ListingPage:
    """Page ``page`` of the public feed (of ``day``, or every day) as ``viewer`` sees it; an empty last
    page when it is beyond reach (``feeds.paging``). Run it in a transaction: it may record a mark."""
    listing = other_feed(day)
    seek = _start(conn, viewer, listing, page)
    if seek is None:
        return BEYOND_REACH
    found = feeds.find_public_page(conn, viewer.user_id, day, size, seek)
    _remember(conn, viewer, listing, page, found.feeds, found.is_last, now)
    return ListingPage(found.feeds, found.is_last, found.viewer_nickname)


def author_page(
    conn: Connection, viewer: Viewer, author_id: int, page: int, size: int, now: datetime
) -> ListingPage:
    """Page ``page`` of ``author_id``'s public feed as ``viewer`` sees it; an empty last page when it is
    beyond reach. Run it in a transaction: it may record a mark."""
    listing = user_feed(author_id)
    seek = _start(conn, viewer, listing, page)
    if seek is None:
        return BEYOND_REACH
    content, is_last = feeds.find_author_page(conn, author_id, viewer.user_id, size, seek)
    _remember(conn, viewer, listing, page, content, is_last, now)
    return ListingPage(content, is_last)
