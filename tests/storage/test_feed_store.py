"""The feed store on both engines (MySQL in production, SQLite for ``make run``): upsert by day, listings
with their child rows, paging, likes, chunked images and the chart entries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert

from feeds.paging import Seek
from storage import feeds
from storage.feeds import IMAGE_CHUNK_BYTES, NewEntry, NewImage
from storage.models import Block
from tests.storage.helpers import make_user

NOW = datetime(2024, 1, 20)


def _entry(user_id: int, date: int, **changes: object) -> NewEntry:
    fields: dict[str, object] = {
        "user_id": user_id,
        "date": date,
        "weather": "sunny",
        "happiness": 3,
        "text": "t",
        "is_public": True,
        "categories": ["coffee", "music"],
        "images": [],
    }
    return NewEntry(**{**fields, **changes})  # type: ignore[arg-type]


def test_save_upserts_by_day_and_lists_with_children(engine: Engine) -> None:
    me, my_nick = make_user(engine)
    fan, _ = make_user(engine)
    big = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (IMAGE_CHUNK_BYTES // 256 * 2 + 3)  # three chunks
    with engine.begin() as conn:
        first, created = feeds.save_entry(
            conn, _entry(me, 2031012009000000, images=[NewImage("image/png", big)])
        )
        assert created
        feeds.save_entry(conn, _entry(me, 2031010509000000, is_public=False, categories=[]))
        assert feeds.toggle_like(conn, first, fan) is True
    with engine.begin() as conn:
        again, created = feeds.save_entry(
            conn, _entry(me, 2031012023000000, text="edited", categories=["trip"])
        )
        assert (again, created) == (first, False)

    with engine.connect() as conn:
        month = feeds.find_month(conn, my_nick, 2031010100000000)
        assert [(f.date, f.text, f.is_public, f.categories) for f in month] == [
            (2031012023000000, "edited", True, ["trip"]),
            (2031010509000000, "t", False, []),
        ]
        assert month[0].image_ids == []  # images replaced (none now)
        assert len(month[0].likers) == 1 and month[1].likers == []  # the like was kept
        assert feeds.find_day(conn, my_nick, 2031010500000000) is not None
        assert feeds.find_day(conn, my_nick, 2031010600000000) is None
        assert [
            (e.date, e.happiness, e.categories) for e in feeds.entries_between(conn, me, *_jan(2031))
        ] == [
            (2031010509000000, 3, ()),
            (2031012023000000, 3, ("trip",)),
        ]


def _jan(year: int) -> tuple[int, int]:
    return year * 10**12 + 1 * 10**10, year * 10**12 + 2 * 10**10


def test_images_are_chunked_and_reassembled(engine: Engine) -> None:
    me, my_nick = make_user(engine)
    data = b"\xff\xd8\xff" + bytes(range(256)) * (IMAGE_CHUNK_BYTES // 256 + 5)
    with engine.begin() as conn:
        feeds.save_entry(conn, _entry(me, 2032020200000000, images=[NewImage("image/jpeg", data)]))
    with engine.connect() as conn:
        [feed] = feeds.find_month(conn, my_nick, 2032020200000000)
        [image_id] = feed.image_ids
        meta = feeds.image_meta(conn, image_id)
        assert meta is not None and (meta.content_type, meta.byte_size, meta.owner_id) == (
            "image/jpeg",
            len(data),
            me,
        )
        assert feeds.image_bytes(conn, image_id) == data


def test_public_pages_exclude_private_and_blocked_and_know_the_last_page(engine: Engine) -> None:
    viewer, viewer_nick = make_user(engine)
    authors = [make_user(engine)[0] for _ in range(3)]
    day = 2033030300000000
    with engine.begin() as conn:
        for i, author in enumerate(authors):
            feeds.save_entry(conn, _entry(author, day + i * 10**6))
        feeds.save_entry(conn, _entry(viewer, day + 5 * 10**6, is_public=False))
        conn.execute(insert(Block).values(blocker_id=viewer, blocked_id=authors[0], created_at=NOW))
    with engine.connect() as conn:
        first = feeds.find_public_page(conn, viewer, day // 10**8, 1)
        second = feeds.find_public_page(conn, viewer, day // 10**8, 1, Seek(None, 1))
        assert [f.user_id for f in first.feeds + second.feeds] == [authors[2], authors[1]]
        assert (first.is_last, second.is_last) == (False, True)
        assert first.viewer_nickname == viewer_nick
        assert feeds.find_public_page(conn, viewer, day // 10**8, 1, Seek(None, 5)).viewer_nickname is None
        page0 = first.feeds
        assert page0[0].categories == ["coffee", "music"] and page0[0].liked is False
        assert feeds.find_day(conn, "", day, viewer_id=viewer) is None  # no such author
        author_page, last = feeds.find_author_page(conn, authors[1], viewer, 5)
        assert [f.id for f in author_page] == [second.feeds[0].id] and last
