"""findOtherFeed (both sorts) and findUserFeed page by position over real HTTP: while another thread keeps
saving entries ahead of the cursor, the pages an app reads in order show every entry that was there
exactly once, in order (paged by OFFSET, each save would push the last entry of a page onto the next);
a page out of reach of the caller's marks is an empty last page. The thread's saves are counted, not
timed: each page boundary waits for one to commit and lets another run during the next page."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from activities.deps import ActivityDeps
from feeds.paging import MAX_WALK_PAGES
from storage.models import Feed, User
from tests.api.feed_helpers import kst, member, unique_year
from tests.fixtures.ios_client import IOSClient

#: Generous: the saving thread shares two cores with the API, the worker and the servers.
DEADLINE = 120
#: Saves of the thread, per page boundary: one finished before the next page is asked for, one more
#: started then, so it runs while that page is read.
SAVES_PER_PAGE = 2


class AheadOfTheCursor(threading.Thread):
    """Saves entries dated after everything the walk has shown, over its own HTTP connection: on each
    ``page_read`` one, waited for, then another that runs while the next page is read."""

    def __init__(self, saves: Iterator[Callable[[], httpx.Response]]) -> None:
        super().__init__(daemon=True, name="ahead-of-the-cursor")
        self._saves, self._lock = saves, threading.Condition()
        self._asked = self._done = 0
        self._stopped = False
        self.failures: list[str] = []

    def run(self) -> None:
        while True:
            with self._lock:
                while self._done >= self._asked and not self._stopped:
                    self._lock.wait()
                if self._done >= self._asked:
                    return
            resp = next(self._saves)()
            with self._lock:
                if resp.status_code != 200:
                    self.failures.append(resp.text)
                self._done += 1
                self._lock.notify_all()

    def page_read(self) -> None:
        """Ask for ``SAVES_PER_PAGE`` saves; return once the first of them is committed."""
        with self._lock:
            first = self._asked + 1
            self._asked += SAVES_PER_PAGE
            self._lock.notify_all()
            assert self._lock.wait_for(lambda: self._done >= first, timeout=DEADLINE), "no save in time"

    def finish(self) -> int:
        """Wait for the saves asked for; how many there were."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        self.join(DEADLINE)
        assert not self.is_alive() and not self.failures, self.failures
        return self._done


def walk(
    app: IOSClient, path: str, params: dict[str, str | int], ahead: AheadOfTheCursor
) -> list[tuple[str, int]]:
    """Pages 0, 1, … until ``isLast``, as the app asks for them; (nickname, date) of each entry shown."""
    shown: list[tuple[str, int]] = []
    ahead.start()
    for page in range(10_000):
        resp = app.get_query(path, {**params, "page": page})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["pageNumber"] == page and body["numberOfElements"] == len(body["content"])
        shown += [(f["nickname"], f["date"]) for f in body["content"]]
        if body["isLast"]:
            return shown
        ahead.page_read()
    raise AssertionError("no last page")


def listed(deps: ActivityDeps, *where: Any) -> list[tuple[str, int]]:
    """The public entries matching ``where`` as (nickname, date), newest first: what the walk must show."""
    query = (
        select(User.nickname, Feed.date)
        .join(User, User.id == Feed.user_id)
        .where(Feed.is_public.is_(True), *where)
        .order_by(Feed.date.desc(), Feed.id.desc())
    )
    with deps.sessions() as s:
        return [(str(n), int(d)) for n, d in s.execute(query)]


@pytest.fixture(scope="module")
def savers(api_url: str) -> Iterator[list[IOSClient]]:
    """Members whose saves the thread makes, on an HTTP connection of the thread's own."""
    with (
        httpx.Client(base_url=api_url, timeout=30) as own,
        httpx.Client(base_url=api_url, timeout=30) as setup,
    ):
        yield [dataclasses.replace(member(setup), http=own) for _ in range(SAVES_PER_PAGE * 4)]


def test_the_today_sort_shows_each_entry_once_while_newer_ones_are_saved(
    http: httpx.Client, activity_deps: ActivityDeps, savers: list[IOSClient]
) -> None:
    year, viewer = unique_year(), member(http)
    for minute in range(9):
        member(http).save_feed(kst(year, 6, 1, 9, minute))
    before = listed(activity_deps, Feed.day == year * 10**4 + 601)
    assert len(before) == 9
    # each saver once, later in the day than any entry shown
    ahead = AheadOfTheCursor(partial(s.save_feed, kst(year, 6, 1, 20, i)) for i, s in enumerate(savers))
    params: dict[str, str | int] = {"nickname": viewer.nickname, "size": 2, "date": kst(year, 6, 1, 23, 59)}
    assert walk(viewer, "/feed-service/findOtherFeed", params, ahead) == before
    assert ahead.finish() == SAVES_PER_PAGE * 4  # five pages: four boundaries


def test_the_total_sort_shows_each_entry_once_while_newer_ones_are_saved(
    http: httpx.Client, activity_deps: ActivityDeps, savers: list[IOSClient]
) -> None:
    year, viewer, writer = unique_year(), member(http), member(http)
    for day in range(1, 10):
        writer.save_feed(kst(year, 3, day))
    before = listed(activity_deps)  # every public entry of the session so far: at least those nine
    size = min(35, len(before) // 4 + 1)  # at least four page boundaries however much is there

    def newest() -> Iterator[Callable[[], httpx.Response]]:
        """The latest days of the calendar, newer than any other test's entries."""
        for day in range(31, 0, -1):
            for saver in savers:
                yield partial(saver.save_feed, kst(9999, 12, day, 23, 59))

    ahead = AheadOfTheCursor(newest())
    params: dict[str, str | int] = {"nickname": viewer.nickname, "size": size}
    assert walk(viewer, "/feed-service/findOtherFeed", params, ahead) == before
    boundaries = (len(before) - 1) // size
    assert boundaries >= 3 and ahead.finish() == SAVES_PER_PAGE * boundaries


def test_a_users_feed_shows_each_entry_once_while_they_save_newer_ones(
    http: httpx.Client, activity_deps: ActivityDeps, api_url: str
) -> None:
    year, author, viewer = unique_year(), member(http), member(http)
    for day in range(1, 10):
        author.save_feed(kst(year, 4, day))
    before = listed(activity_deps, Feed.user_id == _user_id(activity_deps, author.nickname))
    with httpx.Client(base_url=api_url, timeout=30) as own:
        authors_phone = dataclasses.replace(author, http=own)
        ahead = AheadOfTheCursor(partial(authors_phone.save_feed, kst(year, 5, d)) for d in range(1, 29))
        params: dict[str, str | int] = {
            "dstNickname": author.nickname,
            "size": 2,
            "srcNickname": viewer.nickname,
        }
        assert walk(viewer, "/feed-service/findUserFeed", params, ahead) == before
        assert ahead.finish() == SAVES_PER_PAGE * 4


def _user_id(deps: ActivityDeps, nickname: str) -> int:
    with deps.sessions() as s:
        return int(s.scalars(select(User.id).where(User.nickname == nickname)).one())


def _beyond_reach(listing: str) -> float:
    value = REGISTRY.get_sample_value("sosohappy_feed_pages_beyond_reach_total", {"listing": listing})
    return value or 0.0


def test_a_page_no_mark_reaches_is_an_empty_last_page_and_costs_no_walk(http: httpx.Client) -> None:
    year, viewer, author = unique_year(), member(http), member(http)
    for day in range(1, 16):
        author.save_feed(kst(year, 2, day))
    user_feed: dict[str, str | int] = {
        "dstNickname": author.nickname,
        "size": 1,
        "srcNickname": viewer.nickname,
    }
    before = _beyond_reach("user"), _beyond_reach("other")
    deep = MAX_WALK_PAGES + 1
    assert viewer.get_query("/feed-service/findUserFeed", {**user_feed, "page": deep}).json() == {
        "content": [],
        "numberOfElements": 0,
        "pageNumber": deep,
        "pageSize": 1,
        "isLast": True,
    }
    other: dict[str, str | int] = {"nickname": viewer.nickname, "size": 21, "page": 100_000}
    assert viewer.get_query("/feed-service/findOtherFeed", other).json() == {
        "content": [],
        "numberOfElements": 0,
        "pageNumber": 100_000,
        "pageSize": 21,
        "isLast": True,
    }
    assert (_beyond_reach("user"), _beyond_reach("other")) == (before[0] + 1, before[1] + 1)
    # Still only the caller may ask as themselves, reachable or not.
    assert author.get_query("/feed-service/findOtherFeed", other).status_code == 400
    # Within reach of the top a page is served without any mark; the app, asking in order, is always.
    near = viewer.get_query("/feed-service/findUserFeed", {**user_feed, "page": MAX_WALK_PAGES}).json()
    assert [f["date"] for f in near["content"]] == [kst(year, 2, 15 - MAX_WALK_PAGES)]
    in_order = [
        viewer.get_query("/feed-service/findUserFeed", {**user_feed, "page": n}).json()["content"][0]["date"]
        for n in range(15)
    ]
    assert in_order == [kst(year, 2, d) for d in range(15, 0, -1)]
