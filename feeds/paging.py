"""How the listings page: by position (date, id), never by counting rows (OFFSET).

The client asks ``findOtherFeed`` and ``findUserFeed`` for page 0, 1, 2, … of 21 entries, one after the
other, and sends nothing else. So when page *k* of a listing is served with more to come, the server
records where it ended (a *mark*: the (date, id) of its last entry, for that login and listing), and
page *k*+1 starts right after that position on the listing's index. A deep page then reads what the
first page reads, and entries saved meanwhile (they sort first: a new entry is dated now) never shift
the pages behind them.

A page whose previous page has no mark (a client that skips ahead, a mark that housekeeping deleted,
the "today" sort crossing midnight) starts from the nearest lower mark, or from the top, and counts at
most ``MAX_WALK_PAGES`` pages from there; anything further is answered as an empty last page, so asking
for page 100000 directly costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: Pages a request may count past its nearest mark (or the top): a page without any mark reads at most
#: ``MAX_WALK_PAGES + 1`` pages of rows.
MAX_WALK_PAGES = 10

#: How long an unchanged mark is left as it is before its ``recorded_at`` is renewed: housekeeping
#: deletes marks recorded longer ago than ``feed_page_mark_ttl_seconds`` (at least an hour), so a mark
#: a login keeps reading is never taken from under it.
MARK_REFRESH = timedelta(minutes=10)

#: The listings (``feed_page_marks.listing``) and what their scope is: nothing, the day, the author.
ALL, DAY, AUTHOR = "all", "day", "author"


@dataclass(frozen=True)
class Listing:
    """One listing as a login pages through it: ``kind`` is ``ALL`` (scope 0), ``DAY`` (scope
    yyyyMMdd: the "today" sort of ``findOtherFeed``) or ``AUTHOR`` (scope: the author's user id)."""

    kind: str
    scope: int


def other_feed(day: int | None) -> Listing:
    """``findOtherFeed``'s listing: every public entry, or those of ``day`` (yyyyMMdd)."""
    return Listing(ALL, 0) if day is None else Listing(DAY, day)


def user_feed(author_id: int) -> Listing:
    """``findUserFeed``'s listing: one author's public entries."""
    return Listing(AUTHOR, author_id)


@dataclass(frozen=True)
class Position:
    """A place in a listing's order (``date`` descending, then ``feed_id`` descending)."""

    date: int
    feed_id: int


@dataclass(frozen=True)
class Mark:
    """Page ``page`` of a listing ended at ``position`` (as recorded at ``recorded_at``, when read back)."""

    page: int
    position: Position
    recorded_at: datetime | None = None


@dataclass(frozen=True)
class Seek:
    """Where a page's rows start: right after ``after`` (``None``: at the top), then ``skip_pages``
    whole pages further (0 when the previous page has a mark)."""

    after: Position | None
    skip_pages: int


def is_current(mark: Mark | None, position: Position, now: datetime) -> bool:
    """Whether ``mark``, a page's own mark read back, already says what recording ``position`` now
    would: the same position, recorded less than ``MARK_REFRESH`` ago. A page re-read at the same place
    (pull to refresh with nothing new) then costs a read, not a write and a commit."""
    if mark is None or mark.position != position or mark.recorded_at is None:
        return False
    return now - mark.recorded_at < MARK_REFRESH


def lowest_useful_page(page: int) -> int:
    """The lowest page whose mark can still serve ``page`` (marks of pages below are too far back)."""
    return page - 1 - MAX_WALK_PAGES


def seek_for(page: int, nearest: Mark | None) -> Seek | None:
    """Where ``page`` starts, given the nearest mark below it (``None``: none within reach); ``None``
    when it is further than ``MAX_WALK_PAGES`` pages past both that mark and the top."""
    if nearest is not None and lowest_useful_page(page) <= nearest.page < page:
        return Seek(nearest.position, page - 1 - nearest.page)
    if page <= MAX_WALK_PAGES:
        return Seek(None, page)
    return None
