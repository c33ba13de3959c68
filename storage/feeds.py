"""Feeds: the one-entry-per-day upsert, listings with their child rows, likes (images and their
chunks: ``storage.feed_images``).

Every listing is one range or key query on an index (``(user_id, date)`` for a user's month and an
author's page, ``(is_public, date)`` / ``(day, is_public, date)`` for the public feed). Pages start at a
position (``feeds.paging.Seek``: right after a (date, id), found by ``storage.feed_pages``), so a deep
page is a range scan from there, as cheap as the first. Each
feed row carries its child rows (categories, image ids, likes) as correlated ordered string
aggregates, so a page is one round trip with one row per feed, never a join that multiplies rows.
Functions take a SQLAlchemy ``Connection``; writers run in the caller's transaction
(``engine.begin()``), so the caller's identity checks and the write commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased

from feeds.happiness import Entry
from feeds.paging import Seek
from kst.dates import day_of, month_range
from storage.feed_images import NewImage, rotate_public_ids, store_image
from storage.logins import utcnow
from storage.models import Block, Feed, FeedCategory, FeedImage, FeedLike, User
from storage.users import not_resigning


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


# How the listings are read: an owner sees who liked each entry, anyone else whether they did.
OWNER, VIEWER = "owner", "viewer"


def _ordered_list(dialect: str, value: Any, order_by: Any, *where: Any, join: Any = None) -> Any:
    """The comma-joined ``value`` of a feed's child rows in ``order_by`` order, as a correlated scalar
    subquery (one string per feed row; the values never contain commas). SQLite before 3.44 has no
    ``ORDER BY`` inside ``group_concat``, so there it aggregates an ordered subquery instead."""
    if dialect == "sqlite":
        rows = select(value.label("v")).where(*where).order_by(order_by).correlate(Feed)
        inner = (rows.join_from(*join) if join is not None else rows).subquery()
        return select(func.group_concat(inner.c.v, ",")).scalar_subquery()
    aggregate = select(func.aggregate_strings(value, ",").aggregate_order_by(order_by)).where(*where)
    return (aggregate.join_from(*join) if join is not None else aggregate).scalar_subquery()


def _listing(dialect: str, view: str) -> Select:
    """Feeds with their author and child rows in one row each: categories and image ids, plus the
    likers' nicknames (``OWNER``) or whether ``:viewer`` liked the feed (``VIEWER``). Child rows are
    correlated subqueries per feed row, never a join that multiplies rows. An author or liker who
    asked to resign is gone from that request on (``ResignWorkflow`` deletes the rows later)."""
    social = (
        _ordered_list(
            dialect,
            User.nickname,
            FeedLike.created_at,
            FeedLike.feed_id == Feed.id,
            join=(FeedLike, User, and_(User.id == FeedLike.user_id, not_resigning())),
        )
        if view == OWNER
        else exists().where(FeedLike.feed_id == Feed.id, FeedLike.user_id == bindparam("viewer"))
    )
    return select(
        Feed.id,
        Feed.user_id,
        User.nickname,
        Feed.date,
        Feed.weather,
        Feed.happiness,
        Feed.text,
        Feed.is_public,
        _ordered_list(dialect, FeedCategory.category, FeedCategory.position, FeedCategory.feed_id == Feed.id),
        _ordered_list(dialect, FeedImage.public_id, FeedImage.position, FeedImage.feed_id == Feed.id),
        social,
    ).join(User, and_(User.id == Feed.user_id, not_resigning()))


def _view(row: Any) -> FeedView:
    categories, images, social = row[8], row[9], row[10]
    return FeedView(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6] or "",
        bool(row[7]),
        categories.split(",") if categories else [],
        [int(i) for i in images.split(",")] if images else [],
        social.split(",") if isinstance(social, str) and social else [],
        social is not None and not isinstance(social, str) and bool(social),
    )


def _feeds_first(query: Select) -> Select:
    """Read ``feeds`` first, in index order, and look authors up per row. Left to itself, MariaDB 10.11
    starts a day's page from ``users`` once there are ~10k of them: every user, then a sort (1.1 s
    instead of 8 ms on 3.65M feeds; ``bench/feed``)."""
    return query.prefix_with("STRAIGHT_JOIN", dialect="mysql")


#: The first page of a listing: from the top.
FIRST_PAGE = Seek(None, 0)


def _after_position(query: Select) -> Select:
    """Only the feeds after ``(:after_date, :after_id)`` in newest-first order. Spelt out rather than as
    the row comparison ``(date, id) < (…)``, which MariaDB does not turn into an index range; this form
    is a range on the index's ``date`` and its implicit trailing ``id``."""
    after_date = bindparam("after_date", type_=BigInteger)
    after_id = bindparam("after_id", type_=BigInteger)
    return query.where(or_(Feed.date < after_date, and_(Feed.date == after_date, Feed.id < after_id)))


#: The index each paged listing walks, newest first: the (date, id) order of its rows.
_PAGE_INDEX = {
    "public": "ix_feeds_is_public_date",
    "public-day": "ix_feeds_day_is_public_date",
    "author": "ix_feeds_user_id_date",
}


def _page_params(seek: Seek, size: int) -> dict[str, Any]:
    """The paging parameters of a page of ``size`` starting at ``seek``; one row more than ``size``
    tells whether another page follows."""
    params: dict[str, Any] = {"limit": size + 1, "offset": seek.skip_pages * size}
    if seek.after is not None:
        params |= {"after_date": seek.after.date, "after_id": seek.after.feed_id}
    return params


@cache
def _statement(dialect: str, name: str, after: bool = False) -> Select:
    """The listing statements, built once per dialect (paged ones also with a start position);
    requests only bind parameters."""
    newest_first = (Feed.date.desc(), Feed.id.desc())
    page = (bindparam("limit", type_=Integer), bindparam("offset", type_=Integer))
    if name == "month":
        return (
            _listing(dialect, OWNER)
            .where(User.nickname == bindparam("nickname"), Feed.date >= bindparam("start"))
            .where(Feed.date < bindparam("end"))
            .order_by(*newest_first)
        )
    if name in ("day-owner", "day-viewer"):
        view = OWNER if name == "day-owner" else VIEWER
        return _listing(dialect, view).where(
            User.nickname == bindparam("nickname"), Feed.day == bindparam("day")
        )
    if name in ("public", "public-day"):
        blocked = select(Block.blocked_id).where(Block.blocker_id == bindparam("viewer"))
        viewer = aliased(User)
        own_nickname = select(viewer.nickname).where(viewer.id == bindparam("viewer")).scalar_subquery()
        query = (
            _listing(dialect, VIEWER)
            .add_columns(own_nickname)
            .where(Feed.is_public == true(), Feed.user_id.not_in(blocked))
        )
        if name == "public-day":
            query = query.where(Feed.day == bindparam("day"))
    elif name == "author":
        query = _listing(dialect, VIEWER).where(Feed.user_id == bindparam("author"), Feed.is_public == true())
    else:
        raise ValueError(name)
    query = _after_position(query) if after else query
    # Pinned: MariaDB 10.11, weighing the range from a position against the whole ``is_public = 1``
    # prefix (about as many rows), reads that prefix backwards from its newest row to the position
    # (OFFSET's cost again, 3,221 rows instead of 21 for a page in bench data); with only this index
    # to choose from it starts the range at the position.
    query = query.with_hint(Feed, f"FORCE INDEX ({_PAGE_INDEX[name]})", dialect_name="mysql")
    return _feeds_first(query.order_by(*newest_first).limit(page[0]).offset(page[1]))


def month_query(conn: Connection, author_nickname: str, date: int) -> tuple[Select, dict[str, Any]]:
    """The author's feeds in the month of ``date`` with the owner's view of their children, newest
    first: a range on the index ``(user_id, date)``."""
    start, end = month_range(date)
    params = {"nickname": author_nickname, "start": start, "end": end}
    return _statement(conn.dialect.name, "month"), params


def public_page_query(
    conn: Connection, viewer_id: int, day: int | None, size: int, seek: Seek = FIRST_PAGE
) -> tuple[Select, dict[str, Any]]:
    """Public feeds (of one day, or all) as ``viewer_id`` sees them, minus the authors they blocked,
    newest first, from ``seek`` on; one row more than ``size`` tells whether another page follows."""
    params: dict[str, Any] = {"viewer": viewer_id, **_page_params(seek, size)}
    after = seek.after is not None
    if day is None:
        return _statement(conn.dialect.name, "public", after), params
    return _statement(conn.dialect.name, "public-day", after), {**params, "day": day}


def find_month(conn: Connection, author_nickname: str, date: int) -> list[FeedView]:
    """``month_query``'s feeds."""
    return [_view(row) for row in conn.execute(*month_query(conn, author_nickname, date))]


def find_day(
    conn: Connection, author_nickname: str, date: int, viewer_id: int | None = None
) -> FeedView | None:
    """The author's feed of the day of ``date`` (unique per user and day), with the owner's view of its
    children, or ``viewer_id``'s."""
    params: dict[str, Any] = {"nickname": author_nickname, "day": day_of(date)}
    if viewer_id is None:
        statement = _statement(conn.dialect.name, "day-owner")
    else:
        statement, params["viewer"] = _statement(conn.dialect.name, "day-viewer"), viewer_id
    row = conn.execute(statement, params).first()
    return _view(row) if row is not None else None


@dataclass(frozen=True)
class PublicPage:
    """A page of the public feed, whether it is the last, and the viewer's nickname (read in the same
    query, so the caller can check who is asking without another round trip; ``None`` on an empty page)."""

    feeds: list[FeedView]
    is_last: bool
    viewer_nickname: str | None


def find_public_page(
    conn: Connection, viewer_id: int, day: int | None, size: int, seek: Seek = FIRST_PAGE
) -> PublicPage:
    """A page of ``public_page_query``."""
    rows = conn.execute(*public_page_query(conn, viewer_id, day, size, seek)).all()
    return PublicPage([_view(row) for row in rows[:size]], len(rows) <= size, rows[0][-1] if rows else None)


def author_page_query(
    conn: Connection, author_id: int, viewer_id: int, size: int, seek: Seek = FIRST_PAGE
) -> tuple[Select, dict[str, Any]]:
    """One author's public feeds as ``viewer_id`` sees them, newest first, from ``seek`` on (a range on
    the index ``(user_id, date)``)."""
    params = {"author": author_id, "viewer": viewer_id, **_page_params(seek, size)}
    return _statement(conn.dialect.name, "author", seek.after is not None), params


def find_author_page(
    conn: Connection, author_id: int, viewer_id: int, size: int, seek: Seek = FIRST_PAGE
) -> tuple[list[FeedView], bool]:
    """A page of ``author_page_query`` and whether it is the last."""
    rows = [_view(row) for row in conn.execute(*author_page_query(conn, author_id, viewer_id, size, seek))]
    return rows[:size], len(rows) <= size


def day_feed(conn: Connection, author_id: int, date: int, *, lock: bool = False) -> DayFeed | None:
    """The author's feed of the day of ``date``; ``lock`` holds its row until the transaction ends."""
    query = select(Feed.id, Feed.user_id, Feed.is_public).where(
        Feed.user_id == author_id, Feed.day == day_of(date)
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    return DayFeed(row[0], row[1], bool(row[2])) if row else None


def save_entry(conn: Connection, entry: NewEntry) -> tuple[int, bool]:
    """Create or replace the user's entry of that day, in the caller's transaction: ``(feed id, created)``.

    Categories and images are replaced (the images get new public ids, so an entry saved as private
    shows none of the ids it had while public); likes stay. Saves of one day serialise on the feed row; when two
    create it at once, the unique ``(user_id, day)`` key lets one insert win and the other (its insert a
    no-op, ``_insert_feed``) replaces it, so exactly one entry remains.
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
    row = {"user_id": entry.user_id, "day": day_of(entry.date), "created_at": now, **values}
    feed_id = None if existing else _insert_feed(conn, row)
    created = feed_id is not None
    if feed_id is None:
        # The day's row, or the one a concurrent save committed first (the no-op insert locked it).
        feed = existing or day_feed(conn, entry.user_id, entry.date, lock=True)
        assert feed is not None
        feed_id = feed.id
        conn.execute(update(Feed).where(Feed.id == feed_id).values(**values))
        conn.execute(delete(FeedCategory).where(FeedCategory.feed_id == feed_id))
        conn.execute(delete(FeedImage).where(FeedImage.feed_id == feed_id))
    if entry.categories:
        conn.execute(
            insert(FeedCategory),
            [{"feed_id": feed_id, "position": i, "category": c} for i, c in enumerate(entry.categories)],
        )
    for position, image in enumerate(entry.images):
        store_image(conn, feed_id, position, image)
    return feed_id, created


def _insert_feed(conn: Connection, values: dict[str, Any]) -> int | None:
    """Insert the feed row ``values``: its id, or ``None`` (a no-op) when a concurrent save committed the
    day's row first. No savepoint: InnoDB rolls a deadlock victim back whole, savepoints included, and
    the deadlock must reach ``storage.db.retry_deadlocks`` as itself, not as a failed rollback to one."""
    if conn.dialect.name in ("mysql", "mariadb"):  # the no-op's inserted id is 0
        result = conn.execute(mysql_insert(Feed).values(**values).on_duplicate_key_update(id=Feed.id))
        return result.lastrowid or None
    # SQLite: its writers are serialised.
    result = conn.execute(sqlite_insert(Feed).values(**values).on_conflict_do_nothing())
    return result.lastrowid if result.rowcount else None


def delete_entry(conn: Connection, author_id: int, date: int) -> bool:
    """Delete the author's feed of that day with its categories, images and likes; False if none."""
    result = conn.execute(delete(Feed).where(Feed.user_id == author_id, Feed.day == day_of(date)))
    return result.rowcount > 0


def set_public(conn: Connection, author_id: int, date: int, is_public: bool | None) -> bool | None:
    """Set (or, with ``None``, toggle) the visibility of the author's feed of that day; the new value,
    or ``None`` when there is no such feed. A public feed turned private gets new image public ids in
    the same transaction: the ids anyone saw while it was public stop working at its commit."""
    feed = day_feed(conn, author_id, date, lock=True)
    if feed is None:
        return None
    new = (not feed.is_public) if is_public is None else is_public
    conn.execute(update(Feed).where(Feed.id == feed.id).values(is_public=new, updated_at=utcnow()))
    if feed.is_public and not new:
        rotate_public_ids(conn, feed.id)
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


@dataclass(frozen=True)
class LikeState:
    """A like as its notice needs it at send time (``like_state``)."""

    is_public: bool
    liked: bool
    #: ``None`` when the liker's account is gone or resigning (or has no nickname).
    liker_nickname: str | None
    owner_nickname: str | None
    #: The owner has blocked the liker (now: a block made after the like counts too).
    liker_blocked: bool = False


def like_state(conn: Connection, feed_id: int, liker_id: int, owner_id: int) -> LikeState | None:
    """Whether ``liker`` still likes ``owner``'s feed ``feed_id``, whether the feed is public, both
    nicknames (the liker's while the account is there and not resigning) and whether ``owner`` has
    blocked ``liker``, in one query on primary keys; ``None`` when the feed is gone (or not ``owner``'s)."""
    owner = aliased(User)
    liker_nickname = (
        select(User.nickname).where(User.id == liker_id, not_resigning()).correlate(None).scalar_subquery()
    )
    blocked = (
        select(Block.blocker_id)
        .where(Block.blocker_id == owner_id, Block.blocked_id == liker_id)
        .correlate(None)
        .exists()
    )
    row = conn.execute(
        select(Feed.is_public, FeedLike.user_id, liker_nickname, owner.nickname, blocked)
        .select_from(Feed)
        .join(owner, owner.id == Feed.user_id)
        .outerjoin(FeedLike, and_(FeedLike.feed_id == Feed.id, FeedLike.user_id == liker_id))
        .where(Feed.id == feed_id, Feed.user_id == owner_id)
    ).first()
    if row is None:
        return None
    return LikeState(bool(row[0]), row[1] is not None, row[2], row[3], bool(row[4]))


def has_entry_on(conn: Connection, user_id: int, day: int) -> bool:
    """Whether the user wrote an entry of ``day`` (``yyyymmdd``, KST)."""
    query = select(Feed.id).where(Feed.user_id == user_id, Feed.day == day).limit(1)
    return conn.execute(query).first() is not None


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
