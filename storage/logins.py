"""Authorize codes (single-use, expiring, shared by every replica), login sessions (refresh families) and
the durable revocation records every replica's revocation view is seeded from."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from storage import devices
from storage.models import AuthorizeCode, LoginSession, Revocation

#: ``Revocation.kind`` of one login, and of a whole account.
SESSION, USER = "session", "user"


def utcnow() -> datetime:
    """Naive UTC now, as stored in the DATETIME columns."""
    return datetime.now(UTC).replace(tzinfo=None)


def authorize_code_hash(code: str) -> str:
    """The key a code is stored under: its SHA-256 hex (the code itself never reaches the database)."""
    return hashlib.sha256(code.encode()).hexdigest()


def create_authorize_code(session: Session, challenge: str, ttl_seconds: int) -> str:
    """Store ``challenge`` under a new random code valid for ``ttl_seconds``.

    The transaction writes this one row: spent codes are ``HousekeepingWorkflow``'s to delete, in
    batches (``storage.housekeeping.delete_spent_authorize_codes``). A purge here made each request's
    delete as large as the expired codes a flood from many addresses had left, and held their locks."""
    now = utcnow()
    code = str(uuid.uuid4())
    session.add(
        AuthorizeCode(
            code_hash=authorize_code_hash(code),
            code_challenge=challenge,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    return code


class Redemption(Enum):
    """The outcome of presenting an authorize code with a verifier at sign-in."""

    REDEEMED = "redeemed"  # the verifier matched: the code is consumed now
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    MISMATCH = "verifier mismatch"  # the code stays usable by its real verifier


def redeem_authorize_code(session: Session, code: str, verifier_matches: Callable[[str], bool]) -> Redemption:
    """Consume ``code`` if it is known, unexpired, unused and ``verifier_matches`` its challenge.

    The row is locked for the check, so two sign-ins presenting one code cannot both redeem it; a
    wrong verifier changes nothing (whoever learnt the code cannot burn it).
    """
    row = session.get(AuthorizeCode, authorize_code_hash(code), with_for_update=True)
    if row is None:
        return Redemption.UNKNOWN
    if row.consumed_at is not None:
        return Redemption.USED
    now = utcnow()
    if row.expires_at < now:
        return Redemption.EXPIRED
    if not verifier_matches(row.code_challenge):
        return Redemption.MISMATCH
    row.consumed_at = now
    session.flush()
    return Redemption.REDEEMED


def consume_authorize_code(session: Session, code: str) -> str | None:
    """Mark ``code`` consumed and return its challenge; ``None`` if unknown or expired.

    Only for sign-in workflows started by an API that did not redeem the code itself (recorded
    histories, a rollout in progress): consuming an already consumed code returns its challenge
    again, since such a workflow's ID is derived from the code and never reused.
    """
    row = session.get(AuthorizeCode, authorize_code_hash(code), with_for_update=True)
    now = utcnow()
    if row is None or (row.consumed_at is None and row.expires_at < now):
        return None
    if row.consumed_at is None:
        row.consumed_at = now
        session.flush()
    return row.code_challenge


class Rotation(Enum):
    """The outcome of presenting a refresh token."""

    ROTATED = "rotated"  # the current generation, outside the window: the login moved to the next one
    CONCURRENT = "concurrent"  # the current or the previous one, within the window: the current pair
    REUSED = "reused"  # older, or the one just rotated after the window: the login is revoked
    INVALID = "invalid"  # unknown, revoked or expired login


@dataclass(frozen=True)
class RotationResult:
    """What ``rotate_session`` decided, the generation to issue the new pair for (``ROTATED`` and
    ``CONCURRENT``), and the revocation it recorded (``REUSED``)."""

    rotation: Rotation
    generation: int = 0
    revocation: Revocation | None = None


def open_session(
    session: Session, user_id: int, ttl_seconds: int, session_id: str | None = None
) -> LoginSession:
    """A new login of ``user_id`` at generation 0 (idempotent for a given ``session_id``)."""
    session_id = session_id or str(uuid.uuid4())
    existing = session.get(LoginSession, session_id)
    if existing is not None:
        return existing
    now = utcnow()
    row = LoginSession(
        id=session_id,
        user_id=user_id,
        generation=0,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
        revoked_at=None,
    )
    session.add(row)
    session.flush()
    return row


def rotate_session(
    session: Session,
    session_id: str,
    generation: int,
    ttl_seconds: int,
    grace_seconds: float,
    now: datetime | None = None,
) -> RotationResult:
    """Present the refresh token of ``generation`` for the login ``session_id``.

    The current generation rotates to the next one, at most once per ``grace_seconds``: within that
    window of the last rotation, the current generation and the one just rotated both get the current
    generation again without rotating. The iOS client re-issues once per 403, reading the refresh token
    from its Keychain each time (CLIENT_CONTRACT §2.3): parallel 403s present the same token, and 403s
    answered one after another present whichever token the first re-issue stored, so within one burst
    the generations it presents never drift more than one apart. Anything else (an older generation,
    or the one just rotated after the window) is reuse and revokes the login (recorded in
    ``revocations`` and its device registrations forgotten, same transaction: a suspected theft ends
    the login's pushes too). Safe under concurrency: the rotation is one conditional UPDATE,
    and every other decision is taken on the row locked ``FOR UPDATE``.
    """
    now = now or utcnow()
    grace = timedelta(seconds=grace_seconds)
    result = session.execute(
        update(LoginSession)
        .where(
            LoginSession.id == session_id,
            LoginSession.generation == generation,
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > now,
            or_(LoginSession.rotated_at.is_(None), LoginSession.rotated_at < now - grace),
        )
        .values(generation=generation + 1, rotated_at=now, expires_at=now + timedelta(seconds=ttl_seconds))
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        return RotationResult(Rotation.ROTATED, generation + 1)
    # Locked, re-read row: another request rotated (or revoked) it after our UPDATE missed.
    row = session.scalars(
        select(LoginSession)
        .where(LoginSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return RotationResult(Rotation.INVALID)
    if (
        generation in (row.generation - 1, row.generation)
        and row.rotated_at is not None
        and now - row.rotated_at <= grace
    ):
        return RotationResult(Rotation.CONCURRENT, row.generation)
    return RotationResult(Rotation.REUSED, revocation=revoke_session(session, session_id, now))


def revoke_session(session: Session, session_id: str, now: datetime | None = None) -> Revocation | None:
    """Mark one login revoked (sign-out, refresh-token reuse), forget the devices it registered and
    record it, all in the caller's transaction; ``None`` if it already was revoked (its devices are
    forgotten all the same)."""
    now = now or utcnow()
    result = session.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    devices.remove_session_devices(session, session_id)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return _record(session, SESSION, session_id, now=now)[0]


def revoke_user_sessions(session: Session, user_id: int) -> list[Revocation]:
    """Revoke every login of ``user_id`` (resign) and record each; returns the records."""
    now = utcnow()
    ids = list(
        session.scalars(
            select(LoginSession.id)
            .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
            .with_for_update()
        )
    )
    if not ids:
        return []
    session.execute(update(LoginSession).where(LoginSession.id.in_(ids)).values(revoked_at=now))
    return _record(session, SESSION, *ids, now=now)


def record_account_deleted(session: Session, user_id: int) -> Revocation:
    """Record that the account ``user_id`` is gone (in the transaction deleting its row): every token
    of that user is revoked, including logins opened after resign revoked the others."""
    return _record(session, USER, str(user_id), now=utcnow())[0]


def _record(session: Session, kind: str, *subjects: str, now: datetime) -> list[Revocation]:
    rows = [Revocation(kind=kind, subject=subject, revoked_at=now) for subject in subjects]
    session.add_all(rows)
    session.flush()
    return rows


def revocations_since(session: Session, since: datetime) -> list[Revocation]:
    """The revocation records with ``revoked_at >= since`` (an index range scan), oldest first."""
    return list(
        session.scalars(
            select(Revocation).where(Revocation.revoked_at >= since).order_by(Revocation.revoked_at)
        )
    )


def session_is_active(session: Session, session_id: str) -> bool:
    """True while the login exists, is not revoked and has not expired."""
    row = session.get(LoginSession, session_id)
    return row is not None and row.revoked_at is None and row.expires_at > utcnow()
