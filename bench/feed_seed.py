"""Bulk seeding of users, logins, feeds and their child rows for ``bench.feed``, straight in SQL.

Users, logins and blocks are small multi-row ``INSERT``s from Python; feeds, categories, images, image
chunks and likes are ``INSERT … SELECT`` statements the server evaluates itself, in chunks of users, with
values drawn from ``CRC32`` of the row's ids (the same data on every run). Feed ids are explicit
(``(user_id - 1) * days + day_index + 1``), so every child row derives from its feed id alone.
Unique and foreign-key checks are off in the loading session: the generated data is consistent by
construction (one feed per user and day, distinct categories, likers other than the author).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from feeds.entries import CATEGORIES, WEATHERS

TABLES = (
    "users",
    "login_sessions",
    "blocks",
    "feeds",
    "feed_categories",
    "feed_images",
    "feed_image_chunks",
    "feed_likes",
)
FIRST_DAY = date(2025, 1, 1)
PUBLIC_PERCENT = 80
IMAGE_PERCENT = 20  # of feeds have images; a quarter of those have two
MAX_LIKES = 4  # 0..4 likes per public feed, from other users
CHUNK_USERS = 250  # users per INSERT … SELECT round (365 days: ~91k feeds)
PHRASES = (
    "좋은 하루",
    "coffee with friends",
    "산책하고 낮잠",
    "long day at work",
    "맛있는 저녁",
    "rainy mood",
)
# The feed id sits in the low 25 bits of an image id (with the image position), above it 26 hashed bits.
MAX_FEEDS = 1 << 24
# Secondary indexes whose order is not the load order: (table, name, columns).
LATE_INDEXES = (
    ("feeds", "ix_feeds_day_is_public_date", "day, is_public, date"),
    ("feeds", "ix_feeds_is_public_date", "is_public, date"),
    ("feed_likes", "ix_feed_likes_user_id", "user_id"),
)


def _sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _png_sql(id_expr: str) -> str:
    """Small PNG-looking bytes unique to an image id: signature, IHDR header, the id, padding."""
    return (
        f"CONCAT(UNHEX('89504E470D0A1A0A0000000D49484452'), UNHEX(LPAD(HEX({id_expr}), 16, '0')), "
        "REPEAT(UNHEX('00'), 40))"
    )


def nickname(user_id: int) -> str:
    """The nickname of seeded user ``user_id``."""
    return f"u{user_id:06d}"


def account(user_id: int) -> str:
    """The account e-mail (``<email>+<provider>``) of seeded user ``user_id``."""
    return f"{nickname(user_id)}@bench.dev+kakao"


def session_id(user_id: int) -> str:
    """The login session id of seeded user ``user_id`` (deterministic)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-feed-{user_id}"))


def days_of(count: int) -> list[int]:
    """``count`` consecutive days from 2025-01-01 as ``yyyyMMdd``."""
    return [int((FIRST_DAY + timedelta(days=i)).strftime("%Y%m%d")) for i in range(count)]


def connect(db_url: str) -> pymysql.Connection:
    """A pymysql connection to the database of ``db_url`` (utf8mb4, autocommit off)."""
    url = make_url(db_url)
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        autocommit=False,
    )


def insert_users(cur: Any, ids: range) -> None:
    """Users ``ids`` (``nickname(i)``, ``account(i)``) with one active login session each."""
    cur.executemany(
        "INSERT INTO users (id, account_email, provider, provider_id, nickname, introduction, "
        "created_at, updated_at) VALUES (%s, %s, 'kakao', %s, %s, '', NOW(), NOW())",
        [(i, account(i), str(9_000_000 + i), nickname(i)) for i in ids],
    )
    cur.executemany(
        "INSERT INTO login_sessions (id, user_id, generation, created_at, expires_at, revoked_at) "
        "VALUES (%s, %s, 0, NOW(), NOW() + INTERVAL 30 DAY, NULL)",
        [(session_id(i), i) for i in ids],
    )


def table_rows(db_url: str) -> dict[str, int]:
    """Exact row counts of the seeded tables."""
    conn = connect(db_url)
    try:
        with conn.cursor() as cur:
            counts = {}
            for table in TABLES:
                cur.execute(f"SELECT COUNT(*) FROM {table}")
                counts[table] = int(cur.fetchone()[0])
            return counts
    finally:
        conn.close()


class Seeder:
    """Adds users ``first..last`` with a feed for each of ``days`` days, reporting progress via ``say``."""

    def __init__(self, db_url: str, days: int, say: Callable[[str], None]) -> None:
        self.db_url = db_url
        self.days = days
        self.day_values = days_of(days)
        self.say = say

    def add_users(self, first: int, last: int) -> None:
        """Seed users ``first..last`` (1-based ids) and everything they own; likers are drawn from all
        users ``1..last``."""
        if last * self.days >= MAX_FEEDS:
            raise ValueError(f"at most {MAX_FEEDS} feeds (image ids embed the feed id)")
        conn = connect(self.db_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
                self._helpers(cur)
                self._users(cur, first, last)
                conn.commit()
                # Indexes in (day, date) or liker order would take random writes all over a table bigger
                # than the buffer pool; they are dropped during the load and rebuilt by sorting.
                for table, name, _ in LATE_INDEXES:
                    cur.execute(f"ALTER TABLE {table} DROP INDEX {name}")
                self._feeds(conn, cur, first, last)
                self._images(conn, cur, first, last)
                for table, name, columns in LATE_INDEXES:
                    t0 = time.perf_counter()
                    cur.execute(f"ALTER TABLE {table} ADD INDEX {name} ({columns})")
                    self.say(f"  rebuilt index {name} in {time.perf_counter() - t0:.1f} s")
                cur.execute("DROP TABLE bench_days, bench_seq")
            conn.commit()
        finally:
            conn.close()

    def _helpers(self, cur: Any) -> None:
        cur.execute("DROP TABLE IF EXISTS bench_days, bench_seq")
        cur.execute("CREATE TABLE bench_days (idx INT PRIMARY KEY, day INT NOT NULL)")
        cur.executemany("INSERT INTO bench_days VALUES (%s, %s)", list(enumerate(self.day_values)))
        cur.execute("CREATE TABLE bench_seq (n INT PRIMARY KEY)")
        cur.executemany("INSERT INTO bench_seq VALUES (%s)", [(n,) for n in range(MAX_LIKES)])

    def _users(self, cur: Any, first: int, last: int) -> None:
        t0 = time.perf_counter()
        ids = range(first, last + 1)
        insert_users(cur, ids)
        # Every 10th user blocks two others (so the blocked-author filter has something to remove).
        blocks = [(i, 1 + (i + k * 37) % last) for i in ids if i % 10 == 0 for k in (1, 2)]
        cur.executemany(
            "INSERT IGNORE INTO blocks (blocker_id, blocked_id, created_at) VALUES (%s, %s, NOW())",
            [b for b in blocks if b[0] != b[1]],
        )
        self.say(
            f"  users {first}..{last}: {len(ids):,} users, {len(ids):,} logins, {len(blocks):,} blocks "
            f"in {time.perf_counter() - t0:.1f} s"
        )

    def _feeds(self, conn: pymysql.Connection, cur: Any, first: int, last: int) -> None:
        total_users, done, rows = last - first + 1, 0, 0
        t0 = time.perf_counter()
        for lo in range(first, last + 1, CHUNK_USERS):
            hi = min(last, lo + CHUNK_USERS - 1)
            counts = self._chunk(cur, lo, hi, last)
            conn.commit()
            done += hi - lo + 1
            rows += sum(counts)
            elapsed = time.perf_counter() - t0
            self.say(
                f"  feeds of users {lo}..{hi} ({done:,}/{total_users:,} users): +{counts[0]:,} feeds, "
                f"+{counts[1]:,} categories, +{counts[2]:,} likes; "
                f"{rows:,} rows in {elapsed:.0f} s ({rows / elapsed:,.0f} rows/s)"
            )

    def _feed_ids(self, lo: int, hi: int) -> str:
        """The ids of the feeds of users ``lo..hi``, computed (the feeds table is not read)."""
        return (
            f"SELECT (u.id - 1) * {self.days} + d.idx + 1 AS id, u.id AS uid, d.idx, d.day "
            f"FROM users u JOIN bench_days d WHERE u.id BETWEEN {lo} AND {hi}"
        )

    def _chunk(self, cur: Any, lo: int, hi: int, all_users: int) -> tuple[int, int, int]:
        f_lo, f_hi = (lo - 1) * self.days + 1, hi * self.days
        time_of_day = (
            "MOD(h, 24) * 1000000 + MOD(h DIV 24, 60) * 10000 + MOD(h DIV 1440, 60) * 100"
            " + MOD(h DIV 86400, 100)"
        )
        feeds = cur.execute(
            "INSERT INTO feeds (id, user_id, day, date, weather, happiness, text, is_public, created_at, "
            "updated_at) "
            f"SELECT id, uid, day, day * 100000000 + {time_of_day}, "
            f"ELT(1 + MOD(h DIV 8640000, 5), {_sql_list(sorted(WEATHERS))}), 1 + MOD(h2, 5), "
            f"CONCAT(ELT(1 + MOD(h2 DIV 5, {len(PHRASES)}), {_sql_list(PHRASES)}), ' #', idx + 1), "
            f"MOD(h2 DIV 30, 100) < {PUBLIC_PERCENT}, NOW(), NOW() "
            "FROM (SELECT g.*, CRC32(CONCAT(uid, ':', idx)) AS h, CRC32(CONCAT(idx, '/', uid)) AS h2 "
            f"FROM ({self._feed_ids(lo, hi)}) g) x ORDER BY id"
        )
        categories = cur.execute(
            "INSERT INTO feed_categories (feed_id, position, category) "
            f"SELECT f.id, s.n, ELT(1 + MOD(f.c + s.n * 7, 24), {_sql_list(sorted(CATEGORIES))}) "
            f"FROM (SELECT id, CRC32(CONCAT('c', id)) AS c FROM feeds WHERE id BETWEEN {f_lo} AND {f_hi}) f "
            "JOIN bench_seq s ON s.n <= MOD(f.c DIV 24, 3) ORDER BY f.id, s.n"
        )
        likes = 0
        if all_users > 1:
            liker = (
                f"1 + MOD(f.user_id + MOD(f.l DIV {MAX_LIKES + 1} + s.n * 97, {all_users - 1}), {all_users})"
            )
            likes = cur.execute(
                "INSERT IGNORE INTO feed_likes (feed_id, user_id, created_at) "
                f"SELECT f.id, {liker}, NOW() "
                "FROM (SELECT id, user_id, CRC32(CONCAT('l', id)) AS l FROM feeds "
                f"WHERE id BETWEEN {f_lo} AND {f_hi} AND is_public) f "
                f"JOIN bench_seq s ON s.n < MOD(f.l, {MAX_LIKES + 1}) ORDER BY f.id, 2"
            )
        return feeds, categories, likes

    def _images(self, conn: pymysql.Connection, cur: Any, first: int, last: int) -> None:
        """Images of ``IMAGE_PERCENT`` of the feeds, in slices of the (random) image id space, each
        inserted in id order, then their one chunk each."""
        f_lo, f_hi = (first - 1) * self.days + 1, last * self.days
        image_id = "((1 << 51) | (g.r << 25) | (g.id * 2 + s.n))"
        slices, images, t0 = 8, 0, time.perf_counter()
        step = (1 << 26) // slices
        for k in range(slices):
            r_lo, r_hi = k * step, (k + 1) * step - 1
            images += cur.execute(
                "INSERT INTO feed_images (id, public_id, feed_id, position, content_type, byte_size, etag) "
                f"SELECT {image_id}, (1 << 62) | {image_id}, g.id, s.n, 'image/png', LENGTH({_png_sql(image_id)}), "
                f"SHA2({_png_sql(image_id)}, 256) "
                "FROM (SELECT f.id, CRC32(CONCAT('i', f.id)) AS c, CRC32(CONCAT('r', f.id)) & 67108863 AS r "
                f"FROM ({self._feed_ids(first, last)}) f) g "
                f"JOIN bench_seq s ON s.n <= (MOD(g.c DIV 100, 4) = 0) "
                f"WHERE MOD(g.c, 100) < {IMAGE_PERCENT} AND g.r BETWEEN {r_lo} AND {r_hi} ORDER BY 1"
            )
            id_lo, id_hi = (1 << 51) | (r_lo << 25), (1 << 51) | ((r_hi + 1) << 25) - 1
            cur.execute(
                "INSERT INTO feed_image_chunks (image_id, seq, data) "
                f"SELECT id, 0, {_png_sql('id')} FROM feed_images "
                f"WHERE id BETWEEN {id_lo} AND {id_hi} AND feed_id BETWEEN {f_lo} AND {f_hi} ORDER BY id"
            )
            conn.commit()
            elapsed = time.perf_counter() - t0
            self.say(
                f"  images, slice {k + 1}/{slices}: {images:,} images and as many chunks in {elapsed:.0f} s "
                f"({2 * images / elapsed:,.0f} rows/s)"
            )
