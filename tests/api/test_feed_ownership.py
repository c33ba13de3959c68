"""Who may do what with a diary entry: identity comes from the token, private entries stay private,
blocks hide authors, and refused writes change nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text

from activities.deps import ActivityDeps
from storage import feeds, users
from storage.models import FeedLike
from tests.api.feed_helpers import (
    PNG,
    day_feed,
    detail_feed,
    feed_count,
    hangul_nick,
    kst,
    like,
    look_alikes,
    member,
    month_feed,
    spellings,
    unique_year,
)
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import wait_until


@pytest.fixture
def pair(http: httpx.Client) -> tuple[IOSClient, IOSClient, int]:
    """A victim with a public entry on the 1st and a private one on the 2nd, an intruder, and the year."""
    victim, intruder, year = member(http), member(http), unique_year()
    assert victim.save_feed(kst(year, 1, 1), text="public", images=[PNG]).status_code == 200
    assert victim.save_feed(kst(year, 1, 2), text="private", is_public=False, images=[PNG]).status_code == 200
    return victim, intruder, year


def test_writes_in_someone_elses_name_are_refused_and_change_nothing(
    pair: tuple[IOSClient, IOSClient, int], activity_deps: ActivityDeps
) -> None:
    victim, intruder, year = pair
    date = kst(year, 1, 1)
    before = day_feed(victim, victim.nickname, date).json()

    resp = intruder.save_feed(date, text="hijacked", nickname=victim.nickname)
    assert resp.status_code == 400 and "nickname" in resp.json()["message"]
    assert intruder.save_feed(kst(year, 1, 5), nickname=victim.nickname).status_code == 400
    assert feed_count(activity_deps, victim.nickname) == 2
    assert feed_count(activity_deps, intruder.nickname) == 0

    for path in ("/feed-service/deleteFeed", "/feed-service/updatePublicStatus"):
        resp = intruder.post_multipart(path, [("nickname", victim.nickname), ("date", str(date))])
        assert resp.status_code == 400, path
    resp = intruder.post_multipart(
        "/feed-service/updateLike",
        [("nickname", victim.nickname), ("date", str(date)), ("srcNickname", victim.nickname)],
    )
    assert resp.status_code == 400
    assert day_feed(victim, victim.nickname, date).json() == before


def test_private_entries_are_invisible_to_others(pair: tuple[IOSClient, IOSClient, int]) -> None:
    victim, intruder, year = pair
    public, private = kst(year, 1, 1), kst(year, 1, 2)
    assert [f["text"] for f in month_feed(intruder, victim.nickname, public).json()] == ["public"]
    assert [f["text"] for f in month_feed(victim, victim.nickname, public).json()] == ["private", "public"]
    assert day_feed(intruder, victim.nickname, private).content == b""
    assert day_feed(intruder, victim.nickname, public).json()["text"] == "public"
    assert detail_feed(intruder, victim.nickname, private).status_code == 404
    assert detail_feed(victim, victim.nickname, private).json()["text"] == "private"  # the owner may
    assert like(intruder, victim.nickname, private).status_code == 404

    [private_image] = day_feed(victim, victim.nickname, private).json()["imageIdList"]
    [public_image] = day_feed(victim, victim.nickname, public).json()["imageIdList"]
    find = "/feed-service/findFeedImage"
    assert intruder.post_multipart(find, [("imageId", str(private_image))]).status_code == 404
    assert intruder.post_multipart(find, [("imageId", str(public_image))]).status_code == 200
    assert victim.post_multipart(find, [("imageId", str(private_image))]).status_code == 200

    listing = intruder.get_query(
        "/feed-service/findOtherFeed",
        {"nickname": intruder.nickname, "page": 0, "size": 21, "date": private},
    ).json()
    assert listing["content"] == []


def test_who_liked_an_entry_is_shown_to_its_author_only(
    http: httpx.Client, pair: tuple[IOSClient, IOSClient, int]
) -> None:
    """findDayFeed and findMonthFeed of someone else's public entry show the caller at most their own
    like (what ``isLiked`` tells them elsewhere), never who else liked it."""
    victim, stranger, year = pair
    date = kst(year, 1, 1)  # public
    first, second = member(http), member(http)
    for fan in (first, second):
        assert like(fan, victim.nickname, date).json() == {"like": True}

    def likers(app: IOSClient) -> tuple[list[str], list[str]]:
        day = day_feed(app, victim.nickname, date).json()["likeNicknameList"]
        [month] = [f for f in month_feed(app, victim.nickname, date).json() if f["date"] == date]
        return sorted(day), sorted(month["likeNicknameList"])

    assert likers(victim) == (sorted([first.nickname, second.nickname]),) * 2
    assert likers(second) == ([second.nickname],) * 2
    assert likers(stranger) == ([], [])


def test_charts_and_listings_answer_only_for_the_callers_own_nickname(
    pair: tuple[IOSClient, IOSClient, int],
) -> None:
    victim, intruder, year = pair
    date = str(kst(year, 1, 1))
    for path in ("analysisHappiness", "findMonthHappiness", "findYearHappiness"):
        resp = intruder.post_multipart(
            f"/feed-service/{path}", [("nickname", victim.nickname), ("date", date)]
        )
        assert resp.status_code == 400, path
    other = intruder.get_query(
        "/feed-service/findOtherFeed", {"nickname": victim.nickname, "page": 0, "size": 21}
    )
    assert other.status_code == 400
    user = intruder.get_query(
        "/feed-service/findUserFeed",
        {"dstNickname": intruder.nickname, "page": 0, "size": 21, "srcNickname": victim.nickname},
    )
    assert user.status_code == 400
    detail = intruder.post_query(
        "/feed-service/findDetailFeed",
        {"date": int(date), "dstNickname": victim.nickname, "srcNickname": victim.nickname},
    )
    assert detail.status_code == 400


def test_a_block_hides_the_blocked_author_from_the_blocker_only(
    http: httpx.Client, pair: tuple[IOSClient, IOSClient, int]
) -> None:
    victim, blocker, year = pair
    blocker.save_feed(kst(year, 1, 1, 20))
    resp = blocker.post_multipart(
        "/auth-service/block", [("srcNickname", blocker.nickname), ("dstNickname", victim.nickname)]
    )
    assert resp.json() == {"success": True}
    day = kst(year, 1, 1)

    def listed(app: IOSClient) -> list[str]:
        params: dict[str, str | int] = {"nickname": app.nickname, "page": 0, "size": 21, "date": day}
        return [f["nickname"] for f in app.get_query("/feed-service/findOtherFeed", params).json()["content"]]

    assert listed(blocker) == [blocker.nickname]
    assert listed(victim) == [
        blocker.nickname,
        victim.nickname,
    ]  # one-way: the blocked still sees the blocker
    user_feed = blocker.get_query(
        "/feed-service/findUserFeed",
        {"dstNickname": victim.nickname, "page": 0, "size": 21, "srcNickname": blocker.nickname},
    ).json()
    assert user_feed == {
        "content": [],
        "numberOfElements": 0,
        "pageNumber": 0,
        "pageSize": 21,
        "isLast": True,
    }
    assert detail_feed(blocker, victim.nickname, day).status_code == 404
    assert month_feed(blocker, victim.nickname, day).json() == []
    assert day_feed(blocker, victim.nickname, day).content == b""
    assert like(blocker, victim.nickname, day).status_code == 404
    assert detail_feed(victim, blocker.nickname, day).status_code == 200


def test_feed_endpoints_need_a_valid_token(http: httpx.Client) -> None:
    me = member(http)
    me.access = me.access[:-4] + "AAAA"
    assert me.save_feed(kst(2030, 1, 1)).status_code == 403  # 403: the client's re-issue trigger
    assert month_feed(me, me.nickname, kst(2030, 1, 1)).status_code == 403
    assert http.post("/feed-service/findMonthFeed").status_code == 403


# -- spellings of a nickname (issue 12, point 6) ------------------------------------------------


def test_every_spelling_of_the_callers_nickname_acts_as_the_caller(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me, year = member(http, hangul_nick()), unique_year()
    for day, form in enumerate(spellings(me.nickname), start=1):
        date = kst(year, 1, day)
        assert me.save_feed(date, text=f"day {day}", nickname=form).status_code == 200, form
        shown = day_feed(me, form, date).json()
        assert shown["nickname"] == me.nickname and shown["text"] == f"day {day}"
        resp = me.post_multipart(
            "/feed-service/updatePublicStatus",
            [("nickname", form), ("date", str(date)), ("isPublic", "false")],
        )
        assert resp.json()["isPublic"] is False, form
        resp = me.post_multipart(
            "/feed-service/updateLike", [("nickname", form), ("date", str(date)), ("srcNickname", form)]
        )
        assert resp.json() == {"like": True}, form
        detail = me.post_query(
            "/feed-service/findDetailFeed", {"date": date, "dstNickname": form, "srcNickname": form}
        )
        assert detail.json()["isLiked"] is True, form
        assert month_feed(me, form, date).json()[0]["text"] == f"day {day}"
        listing = me.get_query("/feed-service/findOtherFeed", {"nickname": form, "page": 0, "size": 21})
        assert listing.status_code == 200, form
        own = me.get_query(
            "/feed-service/findUserFeed", {"dstNickname": form, "page": 0, "size": 21, "srcNickname": form}
        )
        assert own.status_code == 200, form
        chart = me.post_multipart(
            "/feed-service/findMonthHappiness", [("nickname", form), ("date", str(date))]
        )
        assert chart.status_code == 200, form
    assert feed_count(activity_deps, me.nickname) == 4
    deleted = me.post_multipart(
        "/feed-service/deleteFeed", [("nickname", f" {me.nickname} "), ("date", str(kst(year, 1, 1)))]
    )
    assert deleted.json() == {"result": True}
    assert feed_count(activity_deps, me.nickname) == 3


def test_spellings_of_someone_elses_nickname_never_act_as_them(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    victim, intruder, year = member(http, hangul_nick()), member(http), unique_year()
    public, private = kst(year, 1, 1), kst(year, 1, 2)
    assert victim.save_feed(public, text="public").status_code == 200
    assert victim.save_feed(private, text="private", is_public=False).status_code == 200
    for form in spellings(victim.nickname):
        assert intruder.save_feed(kst(year, 1, 3), nickname=form).status_code == 400, form
        for path in ("deleteFeed", "updatePublicStatus", "analysisHappiness", "findYearHappiness"):
            resp = intruder.post_multipart(
                f"/feed-service/{path}", [("nickname", form), ("date", str(public))]
            )
            assert resp.status_code == 400, (path, form)
        resp = intruder.post_multipart(
            "/feed-service/updateLike", [("nickname", form), ("date", str(public)), ("srcNickname", form)]
        )
        assert resp.status_code == 400, form
        other = intruder.get_query("/feed-service/findOtherFeed", {"nickname": form, "page": 0, "size": 21})
        assert other.status_code == 400, form
        detail = intruder.post_query(
            "/feed-service/findDetailFeed", {"date": public, "dstNickname": form, "srcNickname": form}
        )
        assert detail.status_code == 400, form
        # Reading the victim by another spelling is reading the victim: public entries only.
        assert day_feed(intruder, form, public).json()["text"] == "public"
        assert day_feed(intruder, form, private).content == b""
        assert [f["text"] for f in month_feed(intruder, form, public).json()] == ["public"]
    assert feed_count(activity_deps, victim.nickname) == 2
    assert feed_count(activity_deps, intruder.nickname) == 0
    assert day_feed(victim, victim.nickname, public).json()["likeNicknameList"] == []


def test_look_alikes_of_a_nickname_are_400_and_match_nobody(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me, other, year = member(http, hangul_nick()), member(http), unique_year()
    date = kst(year, 1, 1)
    assert me.save_feed(date).status_code == 200
    for fake in look_alikes(me.nickname):
        resp = me.save_feed(kst(year, 1, 2), nickname=fake)
        assert resp.status_code == 400 and "nickname must not contain" in resp.json()["message"], fake
        assert day_feed(me, fake, date).status_code == 400, fake
        assert like(other, fake, date).status_code == 400, fake
        resp = other.get_query(
            "/feed-service/findUserFeed",
            {"dstNickname": fake, "page": 0, "size": 21, "srcNickname": other.nickname},
        )
        assert resp.status_code == 400 and resp.json()["message"].startswith("dstNickname must not contain")
        resp = me.post_multipart("/feed-service/deleteFeed", [("nickname", fake), ("date", str(date))])
        assert resp.status_code == 400, fake
    assert feed_count(activity_deps, me.nickname) == 1
    assert day_feed(me, me.nickname, date).json()["likeNicknameList"] == []


# -- a like racing the entry's own change ---------------------------------------------------------


def _waiting_likes(deps: ActivityDeps) -> int:
    """Statements locking a feed row now (the like's first, while the author's change holds the row:
    MariaDB waits for a unique-key row lock in the optimizer, so the server's process list shows it)."""
    with deps.engine.connect() as conn:
        query = text(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE info LIKE 'SELECT feeds.id, feeds.user_id, feeds.is_public%FOR UPDATE'"
        )
        return int(conn.execute(query).scalar_one())


@pytest.mark.parametrize("change", ["delete", "make private"])
def test_a_like_racing_the_entrys_deletion_or_privacy_sees_the_entry_as_it_is_now(
    pair: tuple[IOSClient, IOSClient, int], activity_deps: ActivityDeps, change: str
) -> None:
    """The author's change holds the entry's row when the like arrives: the like waits for it, then
    answers 404 (never a 500 from a like on a deleted row, never a like on a now-private entry)."""
    victim, fan, year = pair
    date = kst(year, 1, 1)  # public
    with ThreadPoolExecutor(1) as pool, activity_deps.engine.connect() as author:
        with author.begin():
            victim_id = users.id_of(author, victim.nickname)
            assert victim_id is not None
            if change == "delete":
                assert feeds.delete_entry(author, victim_id, date)
            else:
                assert feeds.set_public(author, victim_id, date, False) is False
            liked = pool.submit(like, fan, victim.nickname, date)
            wait_until(
                lambda: _waiting_likes(activity_deps) or liked.done(),
                "the like waiting for the entry's row",
                deadline_seconds=120,
                interval=0.05,
            )
            assert not liked.done()  # it waits for the author's transaction
        resp = liked.result(timeout=120)
    assert resp.status_code == 404, resp.text
    with activity_deps.engine.connect() as conn:
        fan_id = users.id_of(conn, fan.nickname)
        assert conn.execute(select(FeedLike).where(FeedLike.user_id == fan_id)).first() is None
