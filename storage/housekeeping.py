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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AuthorizeCode, DmPresence, FeedPageMark, LoginSession, Revocation

BATCH = 500


def _delete_in_batches(
    sessions: sessionmaker,
    columns: tuple[Any, ...],
    where: ColumnElement[bool],
    batch: int,
    each_batch: Callable[[int], None] | None,
) -> int:
    """Delete the rows matching ``where``, ``batch`` primary keys (``columns``) at a time; how many went."""
    table = columns[0].table
    deleted = 0
    while True:
        with sessions.begin() as session:
            assert isinstance(session, Session)
            keys = session.execute(select(*columns).where(where).limit(batch)).all()
            if keys:
                key = columns[0] if len(columns) == 1 else tuple_(*columns)
                values = [k[0] for k in keys] if len(columns) == 1 else [tuple(k) for k in keys]
                # ``where`` again: a row refreshed (presence) since it was selected stays.
                session.execute(delete(table).where(key.in_(values), where))
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
