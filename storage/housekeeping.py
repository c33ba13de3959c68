"""Rows that no longer mean anything, deleted in bounded batches (``activities.housekeeping``).

Each kind is selected by a cutoff the caller computes and deleted by primary key, at most ``batch`` rows a
statement, each batch its own short transaction (no long lock, no huge undo log); the loop ends on a batch
smaller than ``batch``. Deleting is idempotent: a row already gone is simply not found again.

- **Login sessions** whose refresh lifetime is over (``expires_at``: revoked ones too, since a revoked
  login's lifetime ends like any other's). Every access token of such a login expired long before (it
  lives hours, the login days), and a refresh token of a login without a row is refused as unknown.
- **Authorize codes** that expired, or that were used more than ``used_before`` ago (the grace lets a
  retried legacy ``consume_authorize_code`` activity still find the code it consumed); a used or
  expired code is refused either way, and an unknown one too.
- **DM presence rows** of dead replicas: rows not refreshed since ``seen_before``. A live replica
  refreshes all its rows every heartbeat and counts none older than the freshness window, so the
  cutoff is far beyond both.
- **Revocation records** older than the longest access-token lifetime (and a margin): every token they
  were about has expired, and no replica seeds or reconciles from them (``api/revocations.py`` reads
  only records younger than the access-token lifetime).
- **Feed page marks** recorded before the marks' lifetime: a login that comes back to a listing later
  starts at page 0 (the app does on every load), and a page whose mark is gone is answered as
  ``feeds.paging`` says, so a deleted mark costs nothing but a long-idle scroll's continuation.
- **Device registrations** whose login is not live (``storage.devices.login_is_live``: revoked, expired,
  gone, another user's, or none): no push is sent to them any more (every device listing filters by the
  same predicate), and the app never signs out, so without this their tokens would stay forever. There
  is no cutoff column to index: the table (one row per device) is walked once in primary-key order
  (keyset, ``id > last``), each row checked against its login by primary key. A sign-in that moves a
  token to a new live login between the select and the delete keeps it (the delete checks again).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from storage.devices import login_is_live
from storage.models import (
    AuthorizeCode,
    DeviceRegistration,
    DmPresence,
    FeedPageMark,
    LoginSession,
    Revocation,
)

BATCH = 500


def _delete_in_batches(
    sessions: sessionmaker,
    columns: tuple[Any, ...],
    where: ColumnElement[bool],
    batch: int,
    each_batch: Callable[[int], None] | None,
    keyset: bool = False,
) -> int:
    """Delete the rows matching ``where``, ``batch`` primary keys (``columns``) at a time; how many went.
    ``keyset`` (a one-column key only): walk the keys in order, each batch after the last one's, so rows
    that stay are read once (for a ``where`` no index narrows)."""
    table = columns[0].table
    assert not keyset or len(columns) == 1
    deleted = 0
    last: Any = None
    while True:
        with sessions.begin() as session:
            assert isinstance(session, Session)
            query = select(*columns).where(where)
            if keyset:
                if last is not None:
                    query = query.where(columns[0] > last)
                query = query.order_by(columns[0])
            keys = session.execute(query.limit(batch)).all()
            if keys:
                key = columns[0] if len(columns) == 1 else tuple_(*columns)
                values = [k[0] for k in keys] if len(columns) == 1 else [tuple(k) for k in keys]
                # ``where`` again: a row refreshed (presence) since it was selected stays.
                session.execute(delete(table).where(key.in_(values), where))
                last = keys[-1][0]
        deleted += len(keys)
        if each_batch is not None:
            each_batch(deleted)
        if len(keys) < batch:
            return deleted


def delete_expired_logins(
    sessions: sessionmaker, now: datetime, batch: int = BATCH, each_batch: Callable[[int], None] | None = None
) -> int:
    """Login sessions whose refresh lifetime ended before ``now``."""
    return _delete_in_batches(sessions, (LoginSession.id,), LoginSession.expires_at < now, batch, each_batch)


def delete_spent_authorize_codes(
    sessions: sessionmaker,
    now: datetime,
    used_before: datetime,
    batch: int = BATCH,
    each_batch: Callable[[int], None] | None = None,
) -> int:
    """Authorize codes expired before ``now`` or used before ``used_before``."""
    where = or_(AuthorizeCode.expires_at < now, AuthorizeCode.consumed_at < used_before)
    return _delete_in_batches(sessions, (AuthorizeCode.code_hash,), where, batch, each_batch)


def delete_dead_presence(
    sessions: sessionmaker,
    seen_before: datetime,
    batch: int = BATCH,
    each_batch: Callable[[int], None] | None = None,
) -> int:
    """DM presence rows not refreshed since ``seen_before``."""
    columns = (DmPresence.replica_id, DmPresence.user_id)
    return _delete_in_batches(sessions, columns, DmPresence.seen_at < seen_before, batch, each_batch)


def delete_stale_revocations(
    sessions: sessionmaker,
    revoked_before: datetime,
    batch: int = BATCH,
    each_batch: Callable[[int], None] | None = None,
) -> int:
    """Revocation records stamped before ``revoked_before``."""
    return _delete_in_batches(
        sessions, (Revocation.id,), Revocation.revoked_at < revoked_before, batch, each_batch
    )


def delete_stale_page_marks(
    sessions: sessionmaker,
    recorded_before: datetime,
    batch: int = BATCH,
    each_batch: Callable[[int], None] | None = None,
) -> int:
    """Feed page marks recorded before ``recorded_before``."""
    columns = (FeedPageMark.login_id, FeedPageMark.listing, FeedPageMark.scope, FeedPageMark.page)
    return _delete_in_batches(
        sessions, columns, FeedPageMark.recorded_at < recorded_before, batch, each_batch
    )


def delete_dead_devices(
    sessions: sessionmaker, now: datetime, batch: int = BATCH, each_batch: Callable[[int], None] | None = None
) -> int:
    """Device registrations whose login is not live at ``now`` (revoked, expired, gone or none)."""
    return _delete_in_batches(
        sessions, (DeviceRegistration.id,), ~login_is_live(now), batch, each_batch, keyset=True
    )
