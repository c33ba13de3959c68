"""Keyset paging of the listings (``storage.feed_pages``, rules in ``feeds.paging``) on both engines: each
page starts where the login's previous page ended, entries saved ahead of that position shift nothing,
and a page out of reach of every mark is an empty last page."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, event, insert, select

from feeds.paging import MARK_REFRESH, MAX_WALK_PAGES
from storage import feed_pages, feeds
from storage.feed_pages import BEYOND_REACH, ListingPage, Viewer
from storage.feeds import NewEntry
from storage.models import Block, Feed, FeedPageMark
from tests.storage.helpers import make_user

NOW = datetime(2024, 1, 20)
#: Entries saved "now" while someone pages: dated after everything else, so ahead of any cursor.
NEWEST_DAY = (9999, 12, 31)


def save(engine: Engine, user_id: int, date: int, is_public: bool = True) -> int:
    """``user_id``'s entry of that day, saved as saveFeed does: its feed id."""
    with engine.begin() as conn:
        return feeds.save_entry(conn, NewEntry(user_id, date, "sunny", 3, "t", is_public, ["coffee"], []))[0]


def kst(year: int, month: int, day: int, minute: int = 0) -> int:
    """A 16-digit date ``minute`` minutes into that day."""
    return int(f"{year:04d}{month:02d}{day:02d}{minute // 60:02d}{minute % 60:02d}0000")


def listed(engine: Engine, *where: object) -> list[int]:
    """The public feeds matching ``where``, newest first (date, then id): what the listing must show."""
    with engine.connect() as conn:
        query = select(Feed.id).where(Feed.is_public.is_(True), *where)  # type: ignore[arg-type]
        return list(conn.scalars(query.order_by(Feed.date.desc(), Feed.id.desc())))


Read = Callable[[Connection, Viewer, int], ListingPage]


@dataclass
class Walk:
    """One login reading one listing page by page, as the app asks for them (0, 1, 2, …)."""

    engine: Engine
    viewer: Viewer
    read: Read

    def page(self, number: int) -> ListingPage:
        """Page ``number``, in its own transaction (as a request)."""
        with self.engine.begin() as conn:
            return self.read(conn, self.viewer, number)

    def to_the_end(self, between: Callable[[], None] = lambda: None) -> list[int]:
        """Pages from 0 until the last, ``between`` run after each; the feed ids in the order shown."""
        shown: list[int] = []
        for number in range(10_000):
            found = self.page(number)
            shown += [f.id for f in found.feeds]
            if found.is_last:
                return shown
            between()
        raise AssertionError("no last page")


def walk(engine: Engine, viewer_id: int, read: Read) -> Walk:
    """A walk by a fresh login of ``viewer_id``."""
    return Walk(engine, Viewer(viewer_id, str(uuid.uuid4())), read)


def day_listing(day: int, size: int) -> Read:
    """findOtherFeed's "today" sort of ``day``."""
    return lambda conn, viewer, n: feed_pages.public_page(conn, viewer, day, n, size, NOW)


def total_listing(size: int) -> Read:
    """findOtherFeed's "total" sort."""
    return lambda conn, viewer, n: feed_pages.public_page(conn, viewer, None, n, size, NOW)


def author_listing(author_id: int, size: int) -> Read:
    """findUserFeed of ``author_id``."""
    return lambda conn, viewer, n: feed_pages.author_page(conn, viewer, author_id, n, size, NOW)


def newcomer(engine: Engine, day: tuple[int, int, int] = NEWEST_DAY, after: int = 0) -> Callable[[], None]:
    """Each call: a new user saves an entry on ``day``, ``after`` minutes into it and a minute later each
    time: ahead of a cursor in that day's listing that is before ``after``."""
    minutes = iter(range(after, 24 * 60))

    def save_one() -> None:
        save(engine, make_user(engine)[0], kst(*day, next(minutes)) + random.randrange(100))

    return save_one


def test_every_listing_pages_from_its_marks_and_entries_saved_ahead_shift_nothing(engine: Engine) -> None:
    year = random.randint(2100, 9998)
    viewer, _ = make_user(engine)
    writers = [make_user(engine)[0] for _ in range(14)]
    author, blocked, private = writers[0], writers[1], writers[2]
    for i, writer in enumerate(writers):  # one entry each on June 1st, a minute apart
        save(engine, writer, kst(year, 6, 1, 60 + i), is_public=writer != private)
    for day in range(2, 14):  # and the author's 12 more days
        save(engine, author, kst(year, 7, day))
    with engine.begin() as conn:
        conn.execute(insert(Block).values(blocker_id=viewer, blocked_id=blocked, created_at=NOW))
    day = year * 10**4 + 601
    before = listed(engine, Feed.day == day, Feed.user_id != blocked)
    assert len(before) == 12
    later_that_day = newcomer(engine, (year, 6, 1), after=600)
    assert walk(engine, viewer, day_listing(day, 5)).to_the_end(between=later_that_day) == before

    author_days = iter(range(1, 29))

    def author_saves_a_later_day() -> None:
        save(engine, author, kst(year, 8, next(author_days)))

    before = listed(engine, Feed.user_id == author)
    assert len(before) == 13
    assert (
        walk(engine, viewer, author_listing(author, 4)).to_the_end(between=author_saves_a_later_day) == before
    )

    before = listed(engine, Feed.user_id != blocked)
    assert walk(engine, viewer, total_listing(35)).to_the_end(between=newcomer(engine)) == before


def test_a_page_is_recorded_only_when_another_follows_and_each_login_walks_its_own(engine: Engine) -> None:
    year = random.randint(2100, 9998)
    author, viewer = make_user(engine)[0], make_user(engine)[0]
    for day in range(1, 8):
        save(engine, author, kst(year, 3, day))
    phone = walk(engine, viewer, author_listing(author, 3))
    assert len(phone.to_the_end()) == 7  # pages of 3, 3 and 1
    with engine.connect() as conn:
        marks = conn.execute(
            select(FeedPageMark.page, FeedPageMark.date).where(FeedPageMark.login_id == phone.viewer.login_id)
        ).all()
    assert sorted(marks) == [(0, kst(year, 3, 5)), (1, kst(year, 3, 2))]  # the last page has no successor
    tablet = Walk(engine, Viewer(viewer, str(uuid.uuid4())), phone.read)
    save(engine, author, kst(year, 3, 28))  # the tablet's page 0 now starts one entry later
    assert [f.date for f in tablet.page(0).feeds] == [kst(year, 3, d) for d in (28, 7, 6)]
    assert [f.date for f in tablet.page(1).feeds] == [kst(year, 3, d) for d in (5, 4, 3)]
    assert [f.date for f in phone.page(2).feeds] == [kst(year, 3, 1)]  # from the phone's own mark


def test_a_page_beyond_the_reach_of_every_mark_is_an_empty_last_page(engine: Engine) -> None:
    year = random.randint(2100, 9998)
    author, viewer = make_user(engine)[0], make_user(engine)[0]
    for month in range(1, 3):
        for day in range(1, 29):  # 56 entries: pages 0..55 of one entry
            save(engine, author, kst(year, month, day))
    newest_first = listed(engine, Feed.user_id == author)
    fresh = walk(engine, viewer, author_listing(author, 1))
    assert fresh.page(MAX_WALK_PAGES + 1) == BEYOND_REACH
    assert fresh.page(100_000) == BEYOND_REACH
    # Up to MAX_WALK_PAGES a page without any mark is counted from the top (at most that many pages).
    assert [f.id for f in fresh.page(MAX_WALK_PAGES).feeds] == [newest_first[MAX_WALK_PAGES]]
    # Past the mark that page recorded the same reach applies: up to MAX_WALK_PAGES pages further.
    reach = 2 * MAX_WALK_PAGES + 1
    assert [f.id for f in fresh.page(reach).feeds] == [newest_first[reach]]
    assert fresh.page(reach + MAX_WALK_PAGES + 2) == BEYOND_REACH
    assert [f.id for f in fresh.page(reach + MAX_WALK_PAGES + 1).feeds] == [
        newest_first[reach + MAX_WALK_PAGES + 1]
    ]
    # An app asking in order never meets the limit.
    assert walk(engine, viewer, author_listing(author, 1)).to_the_end() == newest_first
    assert BEYOND_REACH.feeds == [] and BEYOND_REACH.is_last and BEYOND_REACH.beyond_reach


def test_a_page_read_again_at_the_same_place_writes_nothing_until_its_mark_is_due_for_renewal(
    engine: Engine,
) -> None:
    year = random.randint(2100, 9998)
    author, viewer = make_user(engine)[0], make_user(engine)[0]
    for day in range(1, 6):
        save(engine, author, kst(year, 4, day))
    login = Viewer(viewer, str(uuid.uuid4()))
    writes: list[str] = []

    def count_mark_writes(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "feed_page_marks" in statement and not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement)

    def read(page: int, now: datetime) -> list[int]:
        with engine.begin() as conn:
            return [f.date for f in feed_pages.author_page(conn, login, author, page, 2, now).feeds]

    def recorded() -> dict[int, tuple[int, datetime]]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(FeedPageMark.page, FeedPageMark.date, FeedPageMark.recorded_at).where(
                    FeedPageMark.login_id == login.login_id
                )
            ).all()
        return {page: (date, at) for page, date, at in rows}

    event.listen(engine, "before_cursor_execute", count_mark_writes)
    try:
        assert read(0, NOW) == [kst(year, 4, 5), kst(year, 4, 4)]
        assert read(1, NOW) == [kst(year, 4, 3), kst(year, 4, 2)]
        assert len(writes) == 2 and recorded() == {0: (kst(year, 4, 4), NOW), 1: (kst(year, 4, 2), NOW)}
        writes.clear()
        almost_due = NOW + MARK_REFRESH - timedelta(seconds=1)
        assert read(0, almost_due) == [kst(year, 4, 5), kst(year, 4, 4)]  # pull to refresh, nothing new
        assert read(1, almost_due) == [kst(year, 4, 3), kst(year, 4, 2)]
        assert writes == [] and recorded()[0] == (kst(year, 4, 4), NOW)
        save(engine, author, kst(year, 4, 28))  # page 0 now ends one entry earlier: its mark moves
        assert read(0, almost_due) == [kst(year, 4, 28), kst(year, 4, 5)]
        assert len(writes) == 1 and recorded()[0] == (kst(year, 4, 5), almost_due)
        writes.clear()
        due = NOW + MARK_REFRESH
        assert read(1, due) == [kst(year, 4, 4), kst(year, 4, 3)]  # after page 0's new mark
        assert len(writes) == 1 and recorded()[1] == (kst(year, 4, 3), due)
        writes.clear()
        renewal = almost_due + MARK_REFRESH  # unchanged, but recorded a refresh ago: renewed
        assert read(0, renewal) == [kst(year, 4, 28), kst(year, 4, 5)]
        assert len(writes) == 1 and recorded()[0] == (kst(year, 4, 5), renewal)
    finally:
        event.remove(engine, "before_cursor_execute", count_mark_writes)
