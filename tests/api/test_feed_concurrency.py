"""Races the client can cause: parallel saves of one day, and double (or many) taps on the like button;
and a save that InnoDB picks as a deadlock victim."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import httpx
from sqlalchemy import Connection, Engine, func, select, text

from activities.deps import ActivityDeps
from storage.models import Feed, FeedCategory, FeedImage, FeedLike
from tests.api.feed_helpers import JPEG, PNG, day_feed, feed_count, kst, like, member, unique_year, user_id
from tests.fixtures.databases import running
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import wait_until


def test_concurrent_saves_of_one_day_leave_exactly_one_consistent_entry(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me, year = member(http), unique_year()
    variants = [
        (kst(year, 1, 20, 8, i), f"version {i}", ["coffee", "music", "trip"][i % 3], [PNG, JPEG][: i % 3])
        for i in range(12)
    ]
    with ThreadPoolExecutor(len(variants)) as pool:
        answers = list(
            pool.map(
                lambda v: me.save_feed(v[0], text=v[1], categories=v[2], images=v[3]),
                variants,
            )
        )
    assert [r.status_code for r in answers] == [200] * len(variants), [r.text for r in answers]
    assert feed_count(activity_deps, me.nickname, day=year * 10000 + 120) == 1

    stored = day_feed(me, me.nickname, kst(year, 1, 20)).json()
    # The survivor is one whole save, never a mix of two.
    [winner] = [v for v in variants if v[1] == stored["text"]]
    assert stored["date"] == winner[0] and stored["categoryList"] == [winner[2]]
    assert len(stored["imageIdList"]) == len(winner[3])
    with activity_deps.sessions() as s:
        feed_id = s.scalar(select(Feed.id).where(Feed.user_id == user_id(activity_deps, me.nickname)))
        assert (
            s.scalar(select(func.count()).select_from(FeedCategory).where(FeedCategory.feed_id == feed_id))
            == 1
        )
        images = s.scalar(select(func.count()).select_from(FeedImage).where(FeedImage.feed_id == feed_id))
        assert images == len(winner[3])


_INSERT_FEED = text(
    "INSERT INTO feeds (user_id, day, date, weather, happiness, text, is_public, created_at, updated_at) "
    "VALUES (:me, :date DIV 100000000, :date, 'sunny', 3, 'held', 0, NOW(), NOW())"
)


def _hold_author_while_saving(
    holder: Connection,
    watcher: Connection,
    pool: ThreadPoolExecutor,
    author: IOSClient,
    author_id: int,
    date: int,
) -> Future[httpx.Response]:
    """Lock the author's user row on ``holder``, start saving ``date`` and return once the save's insert
    waits for that row (the foreign key check, made once the new row is in the primary key and before
    the unique ``(user_id, day)`` key is)."""
    holder.execute(text("SELECT id FROM users WHERE id = :me FOR UPDATE"), {"me": author_id})
    save = pool.submit(author.save_feed, date)
    wait_until(
        lambda: running(watcher, "INSERT INTO feeds%", f"({author_id}, {date // 10**8},") == 1,
        "the save's insert waiting for the author's row",
    )
    return save


def test_a_save_whose_insert_is_a_deadlock_victim_is_run_again(
    http: httpx.Client, activity_deps: ActivityDeps, locker: Engine
) -> None:
    """InnoDB rolls a deadlock victim's whole transaction back, savepoints included: an insert inside a
    savepoint then failed rolling back to it (1305), which hid the deadlock from the retry and answered
    503. The test makes the deadlock every run: while the save's insert waits for the author's row, the
    transaction holding that row reads the rows inserted after its own with a lock, so each waits for
    the other. It has inserted more rows than the save, so InnoDB picks the save as the victim."""
    me, year = member(http), unique_year()
    me_id, date = user_id(activity_deps, me.nickname), kst(year, 5, 5)
    with locker.connect() as holder, locker.connect() as watcher, ThreadPoolExecutor(1) as pool:
        for other_day in range(1, 9):  # the weight that makes the save the victim
            last = holder.execute(_INSERT_FEED, {"me": me_id, "date": date + other_day * 10**8}).lastrowid
        save = _hold_author_while_saving(holder, watcher, pool, me, me_id, date)
        # Waits for the save's new row: the deadlock, whose victim is the save.
        holder.execute(text("SELECT id FROM feeds WHERE id > :last FOR UPDATE"), {"last": last})
        holder.rollback()
        answer = save.result()

    assert answer.status_code == 200, answer.text
    assert feed_count(activity_deps, me.nickname) == 1
    assert day_feed(me, me.nickname, date).json()["date"] == date


def test_a_save_whose_insert_finds_the_days_row_committed_meanwhile_replaces_it(
    http: httpx.Client, activity_deps: ActivityDeps, locker: Engine
) -> None:
    """The save found no row for the day, but another save committed one before its insert reached the
    unique key: its insert is a no-op and it replaces that row, as a save of an existing day does."""
    me, year = member(http), unique_year()
    me_id, date = user_id(activity_deps, me.nickname), kst(year, 6, 6)
    with locker.connect() as holder, locker.connect() as watcher, ThreadPoolExecutor(1) as pool:
        save = _hold_author_while_saving(holder, watcher, pool, me, me_id, date)
        held_id = holder.execute(_INSERT_FEED, {"me": me_id, "date": date}).lastrowid
        holder.commit()
        answer = save.result()

    assert answer.status_code == 200, answer.text
    with activity_deps.sessions() as s:
        assert s.scalars(select(Feed.id).where(Feed.user_id == me_id)).all() == [held_id]
    assert day_feed(me, me.nickname, date).json()["text"] == "친구랑 카페에서 수다"


def _likes(deps: ActivityDeps, author: str) -> int:
    with deps.sessions() as s:
        feed_id = s.scalar(select(Feed.id).where(Feed.user_id == user_id(deps, author)))
        return int(
            s.scalar(select(func.count()).select_from(FeedLike).where(FeedLike.feed_id == feed_id)) or 0
        )


def test_a_double_tap_answers_like_then_unlike_and_leaves_no_like(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    author, fan, year = member(http), member(http), unique_year()
    date = kst(year, 3, 3)
    author.save_feed(date)
    for taps in (2, 8, 5):
        with ThreadPoolExecutor(taps) as pool:
            answers = list(pool.map(lambda _: like(fan, author.nickname, date), range(taps)))
        assert [r.status_code for r in answers] == [200] * taps
        states = sorted(r.json()["like"] for r in answers)
        # Toggles serialise: they alternate, so the answers split evenly and the end state is their parity.
        assert states.count(True) - states.count(False) in (0, 1)
        assert _likes(activity_deps, author.nickname) == taps % 2
        if taps % 2:
            like(fan, author.nickname, date)  # back to no like before the next round
    assert day_feed(author, author.nickname, date).json()["likeNicknameList"] == []
