"""The workflow-start outbox: rows written with the change that needs a workflow, claimed and removed as
the starts succeed.

A row is queued in the caller's transaction, so the start exists exactly when the change does. Whoever
starts it (the request right after its commit, or a drainer later) first *claims* it: the row's
``next_attempt_at`` moves past a lease, in a short transaction that skips rows another drainer holds
(``FOR UPDATE SKIP LOCKED`` on MySQL/MariaDB; SQLite serialises writers) and re-checks that the row is
still due, so two drainers never hold one row. Rows of one user are handed out oldest first and one at a
time: a later row waits until the earlier one is gone, which keeps one user's renames (and a resign
after them) in the order they were committed. Rows of an :data:`UNORDERED` kind (pushes) stand outside
that order: each is handed out as soon as it is due, and none waits for or holds back another row of its
user. Rows of ordered kinds are handed out before them, so a backlog of pushes never delays a resign.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session, aliased

from storage.logins import utcnow
from storage.models import WorkflowOutbox

#: Kinds whose starts need no order among a user's rows: each is its own workflow, safe in any order
#: (a like's push, a DM's push to its room: their sends re-check that what they tell still stands).
UNORDERED = ("push", "dm-push")


@dataclass(frozen=True)
class QueuedStart:
    """A claimed outbox row: what to start, and how often it was tried before."""

    id: int
    kind: str
    workflow_id: str
    user_id: int
    payload: str
    attempts: int
    #: True when the holder has the lease (a fresh row's caller may start it at once).
    claimed: bool = True


@dataclass(frozen=True)
class Backlog:
    """Rows waiting per kind, and the age of the oldest one (seconds; 0 when none)."""

    pending: dict[str, int]
    oldest_seconds: float


def _queued(row: WorkflowOutbox, claimed: bool = True) -> QueuedStart:
    return QueuedStart(row.id, row.kind, row.workflow_id, row.user_id, row.payload, row.attempts, claimed)


def enqueue(
    session: Session, kind: str, workflow_id: str, user_id: int, payload: str, lease_seconds: float
) -> QueuedStart:
    """Queue a start in the caller's transaction, claimed by the caller for ``lease_seconds``.

    When an earlier row of the same user is still queued the new one is not claimed (``claimed`` is
    False): it is due at once and left to the drainer, which starts them in order. The caller holds the
    user's row lock, so no earlier row of that user can appear after this check. Rows of
    :data:`UNORDERED` kinds neither count as earlier nor wait for one: they are always claimed.
    """
    now = utcnow()
    earlier = (
        None
        if kind in UNORDERED
        else session.scalar(
            select(WorkflowOutbox.id)
            .where(WorkflowOutbox.user_id == user_id, WorkflowOutbox.kind.not_in(UNORDERED))
            .limit(1)
        )
    )
    row = WorkflowOutbox(
        kind=kind,
        workflow_id=workflow_id,
        user_id=user_id,
        payload=payload,
        created_at=now,
        attempts=0,
        next_attempt_at=now if earlier is not None else now + timedelta(seconds=lease_seconds),
    )
    session.add(row)
    session.flush()
    return _queued(row, claimed=earlier is None)


def claim_due(session: Session, lease_seconds: float, limit: int) -> list[QueuedStart]:
    """Claim up to ``limit`` due rows, each the oldest queued row of its user (rows of
    :data:`UNORDERED` kinds aside), for ``lease_seconds``; rows of ordered kinds come first.

    Commit the session right after: the claim is the lease written to the database.
    """
    now = utcnow()
    older = aliased(WorkflowOutbox)
    unordered = WorkflowOutbox.kind.in_(UNORDERED)
    order = (case((unordered, 1), else_=0), WorkflowOutbox.id)
    heads = (
        select(WorkflowOutbox.id)
        .where(
            WorkflowOutbox.next_attempt_at <= now,
            unordered
            | ~select(older.id)
            .where(
                older.user_id == WorkflowOutbox.user_id,
                older.id < WorkflowOutbox.id,
                older.kind.not_in(UNORDERED),
            )
            .exists(),
        )
        .order_by(*order)
        .limit(limit)
    )
    candidates = list(session.scalars(heads))
    if not candidates:
        return []
    # Lock what no other drainer holds, and re-check the due time: a row another drainer claimed and
    # committed since the read above now lies in the future and is left alone.
    rows = list(
        session.scalars(
            select(WorkflowOutbox)
            .where(WorkflowOutbox.id.in_(candidates), WorkflowOutbox.next_attempt_at <= now)
            .order_by(*order)
            .with_for_update(skip_locked=True)
        )
    )
    lease_until = now + timedelta(seconds=lease_seconds)
    claimed = []
    for row in rows:
        # Conditional per row: on SQLite (no row locks) the write lock makes this the decisive check.
        taken = session.execute(
            update(WorkflowOutbox)
            .where(WorkflowOutbox.id == row.id, WorkflowOutbox.next_attempt_at <= now)
            .values(next_attempt_at=lease_until)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            claimed.append(_queued(row))
    return claimed


def release(session: Session, row_id: int, delay_seconds: float = 0) -> None:
    """Give a claimed row back, due after ``delay_seconds``, without counting an attempt."""
    session.execute(
        update(WorkflowOutbox)
        .where(WorkflowOutbox.id == row_id)
        .values(next_attempt_at=utcnow() + timedelta(seconds=delay_seconds))
    )


def done(session: Session, row_id: int) -> None:
    """The start succeeded (or was already done): forget the row."""
    session.execute(delete(WorkflowOutbox).where(WorkflowOutbox.id == row_id))


def retry_later(session: Session, row_id: int, delay_seconds: float, error: str) -> None:
    """The start failed: count the attempt and make the row due again after ``delay_seconds``."""
    session.execute(
        update(WorkflowOutbox)
        .where(WorkflowOutbox.id == row_id)
        .values(
            attempts=WorkflowOutbox.attempts + 1,
            next_attempt_at=utcnow() + timedelta(seconds=delay_seconds),
            last_error=error[:200],
        )
    )


def backlog(session: Session, now: datetime | None = None) -> Backlog:
    """How many starts are queued, per kind, and how long the oldest has waited."""
    now = now or utcnow()
    rows = session.execute(
        select(WorkflowOutbox.kind, func.count(), func.min(WorkflowOutbox.created_at)).group_by(
            WorkflowOutbox.kind
        )
    ).all()
    oldest = min((created for _, _, created in rows if created is not None), default=None)
    return Backlog(
        pending={str(kind): int(count) for kind, count, _ in rows},
        oldest_seconds=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
    )
