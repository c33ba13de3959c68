"""Feeds: the one-entry-per-day upsert, listings with their child rows, likes and images.

Every listing is one range or key query on an index (``(user_id, date)`` for a user's month,
``(is_public, date)`` / ``(day, is_public, date)`` for the public feed) paged in the database; the
child rows of a page (categories, image ids, likes) come in one ``UNION ALL`` round trip keyed by feed
id, never through a join that multiplies them. Functions take a SQLAlchemy ``Connection``; writers run
in the caller's transaction (``engine.begin()``), so the caller's identity checks and the write commit
together.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Select,
    String,
    delete,
    insert,
    literal,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.selectable import CompoundSelect, SelectBase

from feeds.dates import day_of, month_range
from feeds.happiness import Entry
from storage.logins import utcnow
from storage.models import Block, Feed, FeedCategory, FeedImage, FeedImageChunk, FeedLike, User

IMAGE_CHUNK_BYTES = 1 << 20
_IMAGE_ID_BITS = 52  # random ids below 2**53 stay exact in any JSON reader


@dataclass
class FeedView:
    """A feed with its author's nickname and child rows, as listings return it."""

    id: int
    user_id: int
    nickname: str
    date: int
    weather: str
    happiness: int
    text: str
    is_public: bool
    categories: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    likers: list[str] = field(default_factory=list)
    liked: bool = False


@dataclass(frozen=True)
class NewImage:
    """An uploaded image, already checked: its sniffed content type and bytes."""

    content_type: str
    data: bytes


@dataclass(frozen=True)
class NewEntry:
    """The fields of a ``saveFeed``: the caller's entry for the day of ``date``."""

    user_id: int
    date: int
    weather: str
    happiness: int
    text: str
    is_public: bool
    categories: Sequence[str]
    images: Sequence[NewImage]


@dataclass(frozen=True)
class DayFeed:
    """The key facts of one user's feed of one day."""

    id: int
    user_id: int
    is_public: bool


@dataclass(frozen=True)
class ImageMeta:
    """An image's metadata and the visibility of the feed it belongs to."""

    id: int
    content_type: str
    byte_size: int
    etag: str
    owner_id: int
    is_public: bool


def _feeds() -> Select:
    return select(
        Feed.id,
        Feed.user_id,
        User.nickname,
        Feed.date,
        Feed.weather,
        Feed.happiness,
        Feed.text,
        Feed.is_public,
    ).join(User, User.id == Feed.user_id)


def _views(conn: Connection, query: Select) -> list[FeedView]:
    return [
        FeedView(row[0], row[1], row[2], row[3], row[4], row[5], row[6] or "", bool(row[7]))
        for row in conn.execute(query)
    ]


def month_query(author_nickname: str, date: int) -> Select:
    """The author's feeds in the month of ``date``, newest first (index ``(user_id, date)``)."""
    start, end = month_range(date)
    return (
        _feeds()
        .where(User.nickname == author_nickname, Feed.date >= start, Feed.date < end)
        .order_by(Feed.date.desc())
    )


def public_page_query(viewer_id: int, day: int | None, page: int, size: int) -> Select:
    """Public feeds (of one day, or all), minus authors the viewer blocked, newest first; one row more
    than ``size`` tells whether another page follows."""
    query = _feeds().where(
        Feed.is_public == true(),
        Feed.user_id.not_in(select(Block.blocked_id).where(Block.blocker_id == viewer_id)),
    )
    if day is not None:
        query = query.where(Feed.day == day)
    return query.order_by(Feed.date.desc(), Feed.id.desc()).limit(size + 1).offset(page * size)


def author_page_query(author_id: int, page: int, size: int) -> Select:
    """One author's public feeds, newest first, ``size + 1`` rows."""
    return (
        _feeds()
        .where(Feed.user_id == author_id, Feed.is_public == true())
        .order_by(Feed.date.desc(), Feed.id.desc())
        .limit(size + 1)
        .offset(page * size)
    )


def find_month(conn: Connection, author_nickname: str, date: int) -> list[FeedView]:
    """``month_query`` rows, without child rows."""
    return _views(conn, month_query(author_nickname, date))


def find_day(conn: Connection, author_nickname: str, date: int) -> FeedView | None:
    """The author's feed of the day of ``date`` (unique per user and day)."""
    rows = _views(conn, _feeds().where(User.nickname == author_nickname, Feed.day == day_of(date)))
    return rows[0] if rows else None


def find_page(conn: Connection, query: Select, size: int) -> tuple[list[FeedView], bool]:
    """The rows of a ``*_page_query`` and whether it is the last page."""
    rows = _views(conn, query)
    return rows[:size], len(rows) <= size


def attach_children(
    conn: Connection, feeds: Sequence[FeedView], *, likers: bool = False, viewer_id: int | None = None
) -> None:
    """Fill categories and image ids, plus the likers' nicknames (``likers``) or whether ``viewer_id``
    liked each feed, with one query keyed by the feeds' ids."""
    if not feeds:
        return
    ids = [f.id for f in feeds]
    no_num, no_txt, no_at = literal(None, BigInteger), literal(None, String), literal(None, DateTime)
    parts: list[SelectBase] = [
        select(FeedCategory.feed_id, literal(0), FeedCategory.position, no_num, FeedCategory.category, no_at)
        .where(FeedCategory.feed_id.in_(ids)),
        select(FeedImage.feed_id, literal(1), FeedImage.position, FeedImage.id, no_txt, no_at)
        .where(FeedImage.feed_id.in_(ids)),
    ]  # fmt: skip
    if likers:
        parts.append(
            select(FeedLike.feed_id, literal(2), literal(0), FeedLike.user_id, User.nickname, FeedLike.created_at)
            .join(User, User.id == FeedLike.user_id)
            .where(FeedLike.feed_id.in_(ids))
        )  # fmt: skip
    if viewer_id is not None:
        parts.append(
            select(FeedLike.feed_id, literal(3), literal(0), no_num, no_txt, no_at)
            .where(FeedLike.feed_id.in_(ids), FeedLike.user_id == viewer_id)
        )  # fmt: skip
    by_id = {f.id: f for f in feeds}
    query: CompoundSelect = union_all(*parts)
    ordered = query.order_by(literal_column("2"), literal_column("3"), literal_column("6"))
    for feed_id, kind, _pos, num, txt, _at in conn.execute(ordered):
        feed = by_id[feed_id]
        if kind == 0:
            feed.categories.append(txt)
        elif kind == 1:
            feed.image_ids.append(num)
        elif kind == 2:
            feed.likers.append(txt)
        else:
            feed.liked = True


def day_feed(conn: Connection, author_id: int, date: int, *, lock: bool = False) -> DayFeed | None:
    """The author's feed of the day of ``date``; ``lock`` holds its row until the transaction ends."""
    query = select(Feed.id, Feed.user_id, Feed.is_public).where(
        Feed.user_id == author_id, Feed.day == day_of(date)
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    return DayFeed(row[0], row[1], bool(row[2])) if row else None


def save_entry(conn: Connection, entry: NewEntry) -> tuple[int, bool]:
    """Create or replace the user's entry of that day, in the caller's transaction: ``(feed id, created)``.

    Categories and images are replaced; likes stay. Saves of one day serialise on the feed row; when two
    create it at once, the unique ``(user_id, day)`` key lets one insert win and the other (rolled back
    to a savepoint) replaces it, so exactly one entry remains.
    """
    now = utcnow()
    values = {
        "date": entry.date,
        "weather": entry.weather,
        "happiness": entry.happiness,
        "text": entry.text,
        "is_public": entry.is_public,
        "updated_at": now,
    }
    existing = day_feed(conn, entry.user_id, entry.date, lock=True)
    if existing is None:
        try:
            with conn.begin_nested():
                result = conn.execute(
                    insert(Feed).values(
                        user_id=entry.user_id, day=day_of(entry.date), created_at=now, **values
                    )
                )
        except IntegrityError:
            existing = day_feed(conn, entry.user_id, entry.date, lock=True)
            if existing is None:
                raise
        else:
            assert result.inserted_primary_key is not None
            feed_id = int(result.inserted_primary_key[0])
    if existing is not None:
        feed_id = existing.id
        conn.execute(update(Feed).where(Feed.id == feed_id).values(**values))
        conn.execute(delete(FeedCategory).where(FeedCategory.feed_id == feed_id))
        conn.execute(delete(FeedImage).where(FeedImage.feed_id == feed_id))
    if entry.categories:
        conn.execute(
            insert(FeedCategory),
            [{"feed_id": feed_id, "position": i, "category": c} for i, c in enumerate(entry.categories)],
        )
    for position, image in enumerate(entry.images):
        _store_image(conn, feed_id, position, image)
    return feed_id, existing is None


def _store_image(conn: Connection, feed_id: int, position: int, image: NewImage) -> None:
    image_id = secrets.randbits(_IMAGE_ID_BITS) | 1 << (_IMAGE_ID_BITS - 1)
    conn.execute(
        insert(FeedImage).values(
            id=image_id,
            feed_id=feed_id,
            position=position,
            content_type=image.content_type,
            byte_size=len(image.data),
            etag=hashlib.sha256(image.data).hexdigest(),
        )
    )
    for seq, start in enumerate(range(0, max(len(image.data), 1), IMAGE_CHUNK_BYTES)):
        chunk = image.data[start : start + IMAGE_CHUNK_BYTES]
        conn.execute(insert(FeedImageChunk).values(image_id=image_id, seq=seq, data=chunk))


def delete_entry(conn: Connection, author_id: int, date: int) -> bool:
    """Delete the author's feed of that day with its categories, images and likes; False if none."""
    result = conn.execute(delete(Feed).where(Feed.user_id == author_id, Feed.day == day_of(date)))
    return result.rowcount > 0


def set_public(conn: Connection, author_id: int, date: int, is_public: bool | None) -> bool | None:
    """Set (or, with ``None``, toggle) the visibility of the author's feed of that day; the new value,
    or ``None`` when there is no such feed."""
    feed = day_feed(conn, author_id, date, lock=True)
    if feed is None:
        return None
    new = (not feed.is_public) if is_public is None else is_public
    conn.execute(update(Feed).where(Feed.id == feed.id).values(is_public=new, updated_at=utcnow()))
    return new


def toggle_like(conn: Connection, feed_id: int, user_id: int) -> bool:
    """Like the feed, or remove the like if there is one; the new state. Toggles of one feed serialise
    on its row, so a double tap ends as two opposite answers and never as two rows."""
    conn.execute(select(Feed.id).where(Feed.id == feed_id).with_for_update())
    removed = conn.execute(
        delete(FeedLike).where(FeedLike.feed_id == feed_id, FeedLike.user_id == user_id)
    ).rowcount
    if removed:
        return False
    conn.execute(insert(FeedLike).values(feed_id=feed_id, user_id=user_id, created_at=utcnow()))
    return True


def image_meta(conn: Connection, image_id: int) -> ImageMeta | None:
    """An image's metadata with its feed's owner and visibility (no bytes)."""
    row = conn.execute(
        select(
            FeedImage.id,
            FeedImage.content_type,
            FeedImage.byte_size,
            FeedImage.etag,
            Feed.user_id,
            Feed.is_public,
        )
        .join(Feed, Feed.id == FeedImage.feed_id)
        .where(FeedImage.id == image_id)
    ).first()
    return ImageMeta(row[0], row[1], row[2], row[3], row[4], bool(row[5])) if row else None


def image_bytes(conn: Connection, image_id: int) -> bytes:
    """The image's bytes, reassembled from its chunks."""
    query = select(FeedImageChunk.data).where(FeedImageChunk.image_id == image_id)
    return b"".join(bytes(data) for (data,) in conn.execute(query.order_by(FeedImageChunk.seq)))


def entries_between(conn: Connection, user_id: int, start: int, end: int) -> list[Entry]:
    """The user's entries with ``start <= date < end`` (public and private), with their categories."""
    rows = conn.execute(
        select(Feed.id, Feed.date, Feed.happiness, FeedCategory.category)
        .outerjoin(FeedCategory, FeedCategory.feed_id == Feed.id)
        .where(Feed.user_id == user_id, Feed.date >= start, Feed.date < end)
        .order_by(Feed.date, FeedCategory.position)
    )
    entries: dict[int, tuple[int, int, list[str]]] = {}
    for feed_id, date, happiness, category in rows:
        _, _, categories = entries.setdefault(feed_id, (date, happiness, []))
        if category is not None:
            categories.append(category)
    return [Entry(date, happiness, tuple(cats)) for date, happiness, cats in entries.values()]
