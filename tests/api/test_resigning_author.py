"""A user who asked to resign is gone for everyone from that request on: their entries, images, likes,
profile picture and introduction read as absent, even while ``ResignWorkflow`` has not deleted them yet
(it retries Apple and each store for as long as they fail, and waits for Temporal itself when the
start is queued in the outbox)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from sqlalchemy import select, text

from activities.deps import ActivityDeps
from storage.models import Feed, User
from tests.api.feed_helpers import (
    JPEG,
    PNG,
    day_feed,
    detail_feed,
    kst,
    like,
    member,
    month_feed,
    unique_year,
    user_id,
)
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import wait_until


@contextmanager
def _feed_deletion_held(deps: ActivityDeps, author_id: int, date: int) -> Iterator[None]:
    """Hold the author's entry of ``date`` locked. The resign deletes an author's entries in one
    ``DELETE … WHERE id IN (…)``, which takes their rows in id order: saved before the author's other
    entries, this one has the lowest id, so the deletion waits on it before it has touched any other."""
    with deps.engine.connect() as conn, conn.begin():
        held = conn.execute(
            select(Feed.id).where(Feed.user_id == author_id, Feed.day == date // 10**8).with_for_update()
        ).all()
        assert held, "the author has the entry to hold"
        yield


def _deletion_waiting(deps: ActivityDeps) -> bool:
    """Whether the resign's deletion of feeds waits now (the server's process list)."""
    with deps.engine.connect() as conn:
        query = text(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE 'DELETE FROM feeds%'"
        )
        return int(conn.execute(query).scalar_one()) > 0


def _image(http: httpx.Client, image_id: int) -> httpx.Response:
    return http.get(f"/feed-service/image/{image_id}")  # as Kingfisher asks: no token


def _listed(reader: IOSClient, author: IOSClient, date: int) -> list[object]:
    """The dates of the author's entries in the reader's findOtherFeed of ``date``, then findUserFeed."""
    other = reader.get_query(
        "/feed-service/findOtherFeed", {"nickname": reader.nickname, "page": 0, "size": 21, "date": date}
    ).json()["content"]
    user = reader.get_query(
        "/feed-service/findUserFeed",
        {"dstNickname": author.nickname, "page": 0, "size": 21, "srcNickname": reader.nickname},
    ).json()["content"]
    return [f["date"] for f in other if f["nickname"] == author.nickname] + [f["date"] for f in user]


def _profile(reader: IOSClient, author: IOSClient) -> tuple[object, object]:
    img = reader.post_multipart("/auth-service/findProfileImg", [("nickname", author.nickname)]).json()
    intro = reader.post_multipart("/auth-service/findIntroduction", [("nickname", author.nickname)]).json()
    return img["profileImg"], intro["introduction"]


def test_a_resigning_authors_entries_images_likes_and_profile_are_gone_at_the_request(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    author, reader, year = member(http), member(http), unique_year()
    held, shown = kst(year, 2, 1), kst(year, 2, 2)
    assert author.save_feed(held).status_code == 200  # first: the lowest id, where the deletion waits
    assert author.save_feed(shown, text="still here?", images=[PNG]).status_code == 200
    profile = author.post_multipart(
        "/auth-service/setProfile",
        [
            ("email", author.email),
            ("nickname", author.nickname),
            ("profileImg", ("jpeg", JPEG, "image/jpeg")),
            ("introduction", "곧 떠나요"),
        ],
    )
    assert profile.status_code == 200, profile.text
    reader_day = kst(year, 2, 3)
    assert reader.save_feed(reader_day).status_code == 200
    assert like(author, reader.nickname, reader_day).json() == {"like": True}
    [image_id] = day_feed(author, author.nickname, shown).json()["imageIdList"]
    # Before the resign the reader sees all of it (so what follows is the resign's doing).
    assert day_feed(reader, author.nickname, shown).json()["text"] == "still here?"
    assert _listed(reader, author, shown) == [shown, shown, held] and _image(http, image_id).content == PNG
    assert _profile(reader, author) == (base64.b64encode(JPEG).decode(), "곧 떠나요")

    author_id = user_id(activity_deps, author.nickname)
    with _feed_deletion_held(activity_deps, author_id, held):
        resp = author.post_multipart("/auth-service/resign", [("email", author.email)])
        assert resp.json() == {"email": author.email, "success": True}
        wait_until(lambda: _deletion_waiting(activity_deps), "the resign waiting to delete the entries")

        assert day_feed(reader, author.nickname, shown).content == b""
        assert month_feed(reader, author.nickname, shown).json() == []
        assert detail_feed(reader, author.nickname, shown).status_code == 404
        assert _listed(reader, author, shown) == []
        assert _image(http, image_id).status_code == 404
        found = reader.post_multipart("/feed-service/findFeedImage", [("imageId", str(image_id))])
        assert found.status_code == 404
        assert like(reader, author.nickname, shown).status_code == 404
        assert day_feed(reader, reader.nickname, reader_day).json()["likeNicknameList"] == []
        assert _profile(reader, author) == ("", "")

    def account_gone() -> bool:
        with activity_deps.sessions() as s:
            return s.get(User, author_id) is None

    wait_until(account_gone, "the resign finishing once the entry is no longer held")
    assert _image(http, image_id).status_code == 404
