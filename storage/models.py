"""SQLAlchemy models for users, logins, devices, blocks and feeds (MySQL in production, SQLite locally).

Users are keyed by a stable ``users.id``; every other table (and the Mongo messages, ``dm.messages``)
refers to that id, never to a nickname, so a nickname change touches one row here.
Each model has a matching revision under ``storage/migrations``; ``tests/storage/test_migrations.py``
fails when the two drift apart.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT autoincrement on MySQL, INTEGER PRIMARY KEY (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: Table option of every table with a generated id: INTEGER PRIMARY KEY AUTOINCREMENT on SQLite, so an
#: id is never handed out again after its row is deleted (without it SQLite reuses max(id) + 1, and a
#: new account would inherit a resigned one's revocation record and ``resign:<user id>`` workflow id).
#: MySQL keeps its AUTO_INCREMENT counter anyway. Existing SQLite files are rebuilt by revision 0014.
NO_ID_REUSE = {"sqlite_autoincrement": True}
# Up to 4 GiB in MySQL (images, profile pictures); plain BLOB in SQLite.
Blob = LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
# Image chunks (1 MiB each) fit a MEDIUMBLOB.
ChunkBlob = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql")
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
# Nicknames compare exactly (case- and accent-sensitive), as the original's lookups did.
NicknameText = String(40).with_variant(mysql.VARCHAR(40, collation="utf8mb4_bin"), "mysql")
# Look-alike keys (accounts.nicknames.nickname_skeletons: at most 18 characters per nickname character)
# compare exactly too: the key already folds what should be one.
SkeletonText = String(255).with_variant(mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql")
# Account ids are stored in their canonical form (accounts.emails) and compare exactly, as Python does:
# a case- or accent-insensitive collation would find an account for a string the code calls different.
AccountText = String(320).with_variant(mysql.VARCHAR(320, collation="utf8mb4_bin"), "mysql")
# FCM registration tokens are case-sensitive and compare exactly (migration 0016): under the table's
# case- and accent-insensitive collation a sign-in with a variant of another device's token took its row.
TokenText = String(512).with_variant(mysql.VARCHAR(512, collation="utf8mb4_bin"), "mysql")


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (stable across MySQL and SQLite)."""

    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    """An account: one per ``<email>+<provider>``; the nickname is NULL until the profile is set."""

    __tablename__ = "users"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_email: Mapped[str] = mapped_column(AccountText, unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    #: The provider identity the account is bound to (Apple: the verified id_token ``sub``); NULL while
    #: it was only ever signed in with the client's placeholder id (``accounts.identities``).
    provider_id: Mapped[str | None] = mapped_column(String(255))
    nickname: Mapped[str | None] = mapped_column(NicknameText, unique=True)
    #: The nickname's two look-alike keys (``accounts.nicknames.nickname_skeletons``), each unique: no two
    #: users hold nicknames that look alike. NULL before the profile is set, and for a user whose nickname
    #: already shared the key with an earlier user's when the keys were introduced (revision 0013): that
    #: nickname keeps working, the key stays with the earlier user.
    nickname_folded_skeleton: Mapped[str | None] = mapped_column(SkeletonText, unique=True)
    nickname_cased_skeleton: Mapped[str | None] = mapped_column(SkeletonText, unique=True)
    introduction: Mapped[str] = mapped_column(String(255), default="")
    profile_image: Mapped[bytes | None] = mapped_column(Blob, deferred=True)
    profile_image_type: Mapped[str | None] = mapped_column(String(40))
    apple_refresh_token: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AuthorizeCode(Base):
    """A single-use PKCE authorize code, shared by every API replica, valid until ``expires_at``."""

    __tablename__ = "authorize_codes"

    #: SHA-256 hex of the code (column ``code``): the code itself is never stored, so a reader of the
    #: database or of a backup cannot sign in with it.
    code_hash: Mapped[str] = mapped_column("code", String(64), primary_key=True)
    code_challenge: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Set when a sign-in presented the code with its verifier; a consumed code is refused afterwards.
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime)


class LoginSession(Base):
    """One login (device) of a user: the refresh-token family that rotates on every re-issue."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The refresh token carries (session id, generation); each re-issue increments it. The current
    # generation rotates; the one just rotated is answered with the current pair for a grace window
    # after ``rotated_at`` (the client's parallel re-issues); anything older is reuse.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    #: Indexed for housekeeping, which deletes the logins whose refresh lifetime is over.
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: When the current generation was minted (NULL until the first re-issue).
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime)


class Revocation(Base):
    """A durable record of one revocation, written in the transaction that revokes.

    ``kind`` is ``session`` (``subject`` = a login id: sign-out, refresh-token reuse, resign) or ``user``
    (``subject`` = a user id whose account row was deleted). No foreign key: the record outlives the
    rows resign deletes. Replicas seed and reconcile their revocation view from it by ``revoked_at``.
    """

    __tablename__ = "revocations"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(36))
    revoked_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class DeviceRegistration(Base):
    """An FCM registration token of one of a user's devices; a token belongs to one user at a time."""

    __tablename__ = "device_registrations"
    __table_args__ = NO_ID_REUSE

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(36))
    token: Mapped[str] = mapped_column(TokenText, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Block(Base):
    """``blocker`` hides ``blocked`` from their own listings (one-directional)."""

    __tablename__ = "blocks"

    blocker_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    blocked_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Feed(Base):
    """A user's diary entry for one KST day; ``date`` keeps the client's 16-digit value."""

    __tablename__ = "feeds"
    __table_args__ = (
        UniqueConstraint("user_id", "day"),
        Index("ix_feeds_user_id_date", "user_id", "date"),
        Index("ix_feeds_is_public_date", "is_public", "date"),
        Index("ix_feeds_day_is_public_date", "day", "is_public", "date"),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    day: Mapped[int] = mapped_column(Integer)  # yyyyMMdd = date // 10**8
    date: Mapped[int] = mapped_column(BigInteger)
    weather: Mapped[str] = mapped_column(String(32))
    happiness: Mapped[int] = mapped_column(SmallInteger)
    text: Mapped[str | None] = mapped_column(LongText)
    is_public: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class FeedCategory(Base):
    """A category of a feed, in the order the client sent it."""

    __tablename__ = "feed_categories"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    category: Mapped[str] = mapped_column(String(32))


class FeedImage(Base):
    """An image of a feed. ``id`` is internal (its chunks hang off it; it never leaves the server);
    ``public_id`` is the id listings show and ``/feed-service/image/{id}`` takes.

    The image URL needs no token (Kingfisher sends none), so the public id is a capability: random in
    [2**62, 2**63), and replaced when its entry turns private (``storage.feed_images``). The bytes live
    in ``feed_image_chunks`` so listings never touch them and no single row exceeds a server's packet
    limit (MariaDB's default is 16 MiB; the client uploads PNGs of up to ~25 MB).
    """

    __tablename__ = "feed_images"
    __table_args__ = (
        Index("ix_feed_images_feed_id_position", "feed_id", "position"),
        UniqueConstraint("public_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    public_id: Mapped[int] = mapped_column(BigInteger)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(SmallInteger)
    content_type: Mapped[str] = mapped_column(String(40))
    byte_size: Mapped[int] = mapped_column(Integer)
    etag: Mapped[str] = mapped_column(String(64))


class FeedImageChunk(Base):
    """Bytes ``seq * CHUNK`` onwards of an image (``storage.feed_images.IMAGE_CHUNK_BYTES`` per row;
    every chunk but the last is full, so a byte offset names its chunk)."""

    __tablename__ = "feed_image_chunks"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("feed_images.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(ChunkBlob)


class FeedImageUpload(Base):
    """Image bytes one saveFeed stored: counted against its user's daily image budget
    (``storage.image_budget``) for a day from ``uploaded_at``, though the images are replaced or deleted
    meanwhile (writing them was the cost). Each user's rows older than the window go at their next save
    with images, the rest with the user (resign)."""

    __tablename__ = "feed_image_uploads"
    __table_args__ = (
        Index("ix_feed_image_uploads_user_id_uploaded_at", "user_id", "uploaded_at"),
        NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    uploaded_at: Mapped[datetime] = mapped_column(DateTime)
    byte_size: Mapped[int] = mapped_column(BigInteger)


class FeedLike(Base):
    """``user_id`` likes ``feed_id``; the primary key makes a double tap idempotent."""

    __tablename__ = "feed_likes"

    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime)


class FeedPageMark(Base):
    """Where page ``page`` of a listing ended for one login: the (date, id) of its last entry, so the
    next page seeks from there on the listing's index instead of counting rows (``storage.feed_pages``).

    ``listing`` and ``scope`` name the listing: ``all`` (0), ``day`` (its yyyyMMdd) or ``author`` (the
    author's user id). No foreign keys: a mark only locates, and housekeeping deletes marks recorded
    longer ago than ``SOSOHAPPY_FEED_PAGE_MARK_TTL_SECONDS``.
    """

    __tablename__ = "feed_page_marks"

    login_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    listing: Mapped[str] = mapped_column(String(8), primary_key=True)
    scope: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    page: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    date: Mapped[int] = mapped_column(BigInteger)
    feed_id: Mapped[int] = mapped_column(BigInteger)
    #: Indexed for housekeeping, which deletes the marks recorded before the lifetime's cutoff.
    recorded_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class DmPresence(Base):
    """``user_id`` has ``sockets`` DM WebSockets open on API replica ``replica_id``; the replica refreshes
    ``seen_at`` while it lives, so rows of a replica that died go stale and stop counting."""

    __tablename__ = "dm_presence"

    replica_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    sockets: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(DateTime)


class DmRoom(Base):
    """The latest message (by date) of the conversation of two users: the read model of the DM room list,
    written with every message, keyed by user ids so renames never touch it."""

    __tablename__ = "dm_rooms"
    __table_args__ = (
        Index("ix_dm_rooms_user_low_last_date", "user_low", "last_date"),
        Index("ix_dm_rooms_user_high_last_date", "user_high", "last_date"),
    )

    user_low: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    user_high: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    last_sender_id: Mapped[int] = mapped_column(BigInteger)
    last_receiver_id: Mapped[int] = mapped_column(BigInteger)
    last_date: Mapped[int] = mapped_column(BigInteger)
    last_text: Mapped[str] = mapped_column(LongText)
    last_message_id: Mapped[str] = mapped_column(String(24))


class WorkflowOutbox(Base):
    """A workflow start committed in the same transaction as the change that needs it (transactional
    outbox): the request tries it at once and deletes the row; what fails is retried by the API's
    drainer until Temporal takes it (and like pushes whose start failed, queued after the like). Rows of
    one user are started in ``id`` order, pushes aside (``storage.outbox.UNORDERED``)."""

    __tablename__ = "workflow_outbox"
    __table_args__ = (Index("ix_workflow_outbox_user_id_id", "user_id", "id"), NO_ID_REUSE)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    workflow_id: Mapped[str] = mapped_column(String(200))
    # No foreign key: a queued start outlives nothing, but must never block deleting its user.
    user_id: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Due for a (re)try from then on; a drainer that claims the row moves it past its lease.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(String(200))


class NicknameChangeCounter(Base):
    """Per-user rename sequence: ``issued`` numbers each rename in the request's transaction,
    ``applied`` is the last one the messages store has taken, so a re-delivered rename is ignored."""

    __tablename__ = "nickname_changes"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    issued: Mapped[int] = mapped_column(BigInteger)
    applied: Mapped[int] = mapped_column(BigInteger)


class SignInRequest(Base):
    """A validated sign-in, handed to ``SignInWorkflow`` by ``id`` only, so the e-mail, the device token
    and Apple's codes never enter a workflow history (``storage.sign_in_requests``).

    Short-lived: the Apple exchange replaces the authorization code by the refresh token, opening the
    login clears the device token and the refresh token (they moved to their own rows), the API deletes
    the row once the workflow answered, and rows left by a crash are purged when they expire.
    """

    __tablename__ = "sign_in_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(AccountText)
    provider: Mapped[str] = mapped_column(String(16))
    provider_id: Mapped[str] = mapped_column(String(255))
    device_token: Mapped[str | None] = mapped_column(Text)
    apple_authorization_code: Mapped[str | None] = mapped_column(Text)
    apple_refresh_token: Mapped[str | None] = mapped_column(String(1024))
    #: Set by the Apple exchange: whether Apple's ``sub`` is ``provider_id`` and its e-mail ``email``.
    apple_sub_matches: Mapped[bool | None] = mapped_column(Boolean)
    apple_email_matches: Mapped[bool | None] = mapped_column(Boolean)
    #: Set by opening the login (a retried opening answers from them).
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    session_id: Mapped[str | None] = mapped_column(String(36))
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
