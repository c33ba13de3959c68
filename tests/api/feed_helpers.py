"""Shared pieces of the feed tests: image bytes, 16-digit dates, members, reading the database."""

from __future__ import annotations

import random
import unicodedata
import uuid

import httpx
from sqlalchemy import func, select

from activities.deps import ActivityDeps
from storage.models import Feed, User
from tests.fixtures.ios_client import IOSClient

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(200))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(100))
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(50)


def nick() -> str:
    """A fresh nickname (10 characters at most, as the rules require)."""
    return "f" + uuid.uuid4().hex[:8]


def hangul_nick() -> str:
    """A fresh nickname starting with Korean syllables, so its decomposed (NFD) spelling differs."""
    return "행복" + uuid.uuid4().hex[:6]


def member(http: httpx.Client, nickname: str | None = None) -> IOSClient:
    """A signed-up app with ``nickname`` (a fresh one by default)."""
    return IOSClient(http).sign_up(nickname or nick())


def spellings(nickname: str) -> list[str]:
    """Other spellings of ``nickname`` that name the same user: padded, decomposed (NFD), both."""
    nfd = unicodedata.normalize("NFD", nickname)
    assert nfd != nickname, "spellings() needs a nickname with a composed character"
    return [f"{nickname} ", f" {nickname}", nfd, f"\t{nfd} "]


def look_alikes(nickname: str) -> list[str]:
    """Values that look like ``nickname`` but are not nicknames: zero-width, bidi and control characters."""
    return [
        f"{nickname}\u200b",
        f"\u202e{nickname}",
        f"{nickname[0]}\u200d{nickname[1:]}",
        f"{nickname}\u2066",
        f"{nickname[0]}\x00{nickname[1:]}",
    ]


def unique_year() -> int:
    """A year no other test writes to, so day-filtered public listings hold only this test's entries."""
    return random.randint(2100, 9999)


def kst(year: int, month: int, day: int, hh: int = 17, mm: int = 4, ss: int = 27, cs: int = 12) -> int:
    """``yyyyMMddHHmmssSS`` as the client writes it."""
    return int(f"{year:04d}{month:02d}{day:02d}{hh:02d}{mm:02d}{ss:02d}{cs:02d}")


def user_id(deps: ActivityDeps, nickname: str) -> int:
    """The id of the user with ``nickname``."""
    with deps.sessions() as s:
        return s.scalars(select(User.id).where(User.nickname == nickname)).one()


def feed_count(deps: ActivityDeps, nickname: str, day: int | None = None) -> int:
    """How many feed rows ``nickname`` has (on ``day`` = yyyyMMdd, when given)."""
    query = select(func.count()).select_from(Feed).where(Feed.user_id == user_id(deps, nickname))
    if day is not None:
        query = query.where(Feed.day == day)
    with deps.sessions() as s:
        return int(s.scalar(query) or 0)


def day_feed(app: IOSClient, author: str, date: int) -> httpx.Response:
    """findDayFeed as the app sends it."""
    return app.post_multipart("/feed-service/findDayFeed", [("nickname", author), ("date", str(date))])


def month_feed(app: IOSClient, author: str, date: int) -> httpx.Response:
    """findMonthFeed as the app sends it."""
    return app.post_multipart("/feed-service/findMonthFeed", [("nickname", author), ("date", str(date))])


def detail_feed(app: IOSClient, author: str, date: int) -> httpx.Response:
    """findDetailFeed: a POST with a sorted query string and an empty JSON-typed body."""
    return app.post_query(
        "/feed-service/findDetailFeed", {"date": date, "dstNickname": author, "srcNickname": app.nickname}
    )


def like(app: IOSClient, author: str, date: int) -> httpx.Response:
    """updateLike with the parts in the app's order."""
    return app.post_multipart(
        "/feed-service/updateLike",
        [("nickname", author), ("date", str(date)), ("srcNickname", app.nickname)],
    )
