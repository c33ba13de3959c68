"""Who a nudge is for, listed by user id in bounded pages (keyset: ``id > after``, ascending), ids only.

A user is reachable while they have a registered device and a live login (not revoked, not expired):
signing out removes that login's devices and revokes it, and resign deletes both, so users who signed
out everywhere or resigned are never listed. Each condition is an ``EXISTS`` on an indexed column
(``device_registrations.user_id``, ``login_sessions.user_id``, ``feeds (user_id, day)`` and
``feeds (user_id, date)``), so a page costs its own rows, whatever the number of users.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, select
from sqlalchemy.orm import Session

from kst.dates import MONTH, month_range
from storage.models import DeviceRegistration, Feed, LoginSession, User


def _reachable(now: datetime) -> ColumnElement[bool]:
    device = exists().where(DeviceRegistration.user_id == User.id)
    login = exists().where(
        LoginSession.user_id == User.id, LoginSession.revoked_at.is_(None), LoginSession.expires_at > now
    )
    return and_(device, login)


def _page(
    session: Session, due: ColumnElement[bool], now: datetime, after: int, last: int | None, limit: int
) -> list[int]:
    query = select(User.id).where(User.id > after, _reachable(now), due)
    if last is not None:
        query = query.where(User.id <= last)
    return list(session.scalars(query.order_by(User.id).limit(limit)))


def reminder_recipients(
    session: Session, day: int, now: datetime, after: int, limit: int, last: int | None = None
) -> list[int]:
    """Reachable users without an entry of ``day`` (``yyyymmdd``, KST), ids ``after < id <= last``."""
    wrote = exists().where(Feed.user_id == User.id, Feed.day == day)
    return _page(session, ~wrote, now, after, last, limit)


def story_recipients(
    session: Session, month: int, now: datetime, after: int, limit: int, last: int | None = None
) -> list[int]:
    """Reachable users with entries in ``month`` (``yyyymm``, KST), ids ``after < id <= last``."""
    start, end = month_range(month * MONTH)
    wrote = exists().where(Feed.user_id == User.id, Feed.date >= start, Feed.date < end)
    return _page(session, wrote, now, after, last, limit)
