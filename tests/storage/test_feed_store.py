"""The feed store on both engines (MySQL in production, SQLite for ``make run``): upsert by day, listings
with their child rows, paging, likes, chunked images and the chart entries."""

from __future__ import annotations

import io
from datetime import datetime

from sqlalchemy import Connection, Engine, insert

from feeds.paging import Seek
from storage import feed_images, feeds
from storage.feed_images import IMAGE_CHUNK_BYTES, PUBLIC_ID_END, PUBLIC_ID_MIN, NewImage, chunk_count
from storage.feeds import NewEntry
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


def _stored_bytes(conn: Connection, image_id: int, byte_size: int) -> bytes:
    chunks = list(feed_images.read_chunks(conn, image_id, 0, chunk_count(byte_size) - 1))
    assert len(chunks) == chunk_count(byte_size)
    return b"".join(chunks)


def test_images_are_chunked_and_reassembled_from_bytes_or_a_file(engine: Engine) -> None:
    me, my_nick = make_user(engine)
    data = b"\xff\xd8\xff" + bytes(range(256)) * (IMAGE_CHUNK_BYTES // 256 + 5)
    spooled = io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(IMAGE_CHUNK_BYTES - 8))  # exactly one chunk
    spooled.seek(5)  # the store reads a file from its start, wherever it was left
    images = [NewImage("image/jpeg", data), NewImage("image/png", spooled)]
    with engine.begin() as conn:
        feeds.save_entry(conn, _entry(me, 2032020200000000, images=images))
    with engine.connect() as conn:
        [feed] = feeds.find_month(conn, my_nick, 2032020200000000)
        metas = [feed_images.image_meta(conn, public_id) for public_id in feed.image_ids]
        assert all(m is not None for m in metas)
        (jpeg, png) = [m for m in metas if m is not None]
        assert (jpeg.content_type, jpeg.byte_size, jpeg.owner_id) == ("image/jpeg", len(data), me)
        assert _stored_bytes(conn, jpeg.id, jpeg.byte_size) == data
        assert (png.byte_size, chunk_count(png.byte_size)) == (IMAGE_CHUNK_BYTES, 1)
        assert _stored_bytes(conn, png.id, png.byte_size) == spooled.getvalue()
        assert list(feed_images.read_chunks(conn, png.id, 1, 1)) == []
        for meta in (jpeg, png):  # the listed id is the public one, never the internal one
            assert PUBLIC_ID_MIN <= meta.public_id < PUBLIC_ID_END and meta.public_id != meta.id
            assert feed_images.image_meta(conn, meta.id) is None


def test_chunks_read_by_one_statement_outlive_a_delete_committed_meanwhile(engine: Engine) -> None:
    me, my_nick = make_user(engine)
    data = bytes(range(256)) * (3 * IMAGE_CHUNK_BYTES // 256 + 7)  # four chunks
    with engine.begin() as conn:
        feeds.save_entry(conn, _entry(me, 2032030300000000, images=[NewImage("image/jpeg", data)]))
    with engine.connect() as conn:
        [feed] = feeds.find_month(conn, my_nick, 2032030300000000)
        meta = feed_images.image_meta(conn, feed.image_ids[0])
    assert meta is not None
    with engine.connect() as reader:
        chunks = feed_images.read_chunks(reader, meta.id, 0, 3)
        first = next(chunks)  # the statement has begun: its snapshot is taken
        with engine.begin() as conn:
            assert feeds.delete_entry(conn, me, 2032030300000000)
        assert first + b"".join(chunks) == data
    with engine.connect() as conn:
        assert list(feed_images.read_chunks(conn, meta.id, 0, 3)) == []


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
