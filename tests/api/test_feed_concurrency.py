"""Races the client can cause: parallel saves of one day, and double (or many) taps on the like button."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from activities.deps import ActivityDeps
from storage.models import Feed, FeedCategory, FeedImage, FeedLike
from tests.api.feed_helpers import JPEG, PNG, day_feed, feed_count, kst, like, member, unique_year, user_id


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
