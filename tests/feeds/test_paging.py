"""Where a page starts (``feeds.paging.seek_for``): after its predecessor's mark, else a bounded count of
pages past the nearest mark or the top, else nowhere."""

from __future__ import annotations

from datetime import datetime, timedelta

from feeds.paging import (
    MARK_REFRESH,
    MAX_WALK_PAGES,
    Mark,
    Position,
    Seek,
    is_current,
    lowest_useful_page,
    seek_for,
)

AT = Position(2024012017042712, 42)


def test_a_page_starts_right_after_its_predecessors_mark() -> None:
    assert seek_for(7, Mark(6, AT)) == Seek(AT, 0)


def test_without_it_the_walk_from_the_nearest_mark_or_the_top_is_bounded() -> None:
    assert seek_for(7, Mark(3, AT)) == Seek(AT, 3)
    assert seek_for(5, None) == Seek(None, 5)
    assert seek_for(MAX_WALK_PAGES, None) == Seek(None, MAX_WALK_PAGES)
    assert seek_for(50, Mark(50 - 1 - MAX_WALK_PAGES, AT)) == Seek(AT, MAX_WALK_PAGES)
    assert lowest_useful_page(50) == 50 - 1 - MAX_WALK_PAGES


def test_beyond_that_a_page_has_no_start() -> None:
    assert seek_for(MAX_WALK_PAGES + 1, None) is None
    assert seek_for(100_000, None) is None
    assert seek_for(50, Mark(50 - 2 - MAX_WALK_PAGES, AT)) is None
    # A mark at or above the page itself is no predecessor (never used to start it).
    assert seek_for(30, Mark(30, AT)) is None


def test_a_mark_is_current_while_it_holds_the_same_position_and_is_younger_than_the_refresh() -> None:
    recorded = datetime(2024, 1, 20, 12, 0)
    mark = Mark(3, AT, recorded)
    assert is_current(mark, AT, recorded + MARK_REFRESH - timedelta(microseconds=1))
    assert not is_current(mark, AT, recorded + MARK_REFRESH)
    assert not is_current(mark, Position(AT.date, AT.feed_id + 1), recorded)
    assert not is_current(Mark(3, AT), AT, recorded)  # a mark not read back from the table
    assert not is_current(None, AT, recorded)
