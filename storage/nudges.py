"""Who a nudge is for, listed by user id in bounded pages (keyset: ``id > after``, ascending), ids only.

A user is reachable while they have a registered device whose own login is live (not revoked, not
expired: ``storage.devices.login_is_live``, the filter every push listing uses), so users whose logins all
ended (expired, signed out, revoked for refresh-token reuse) or who resigned are never listed, and a live
login on one device does not make another device's dead login reachable. Each condition is an ``EXISTS``
on an indexed column (``device_registrations.user_id``, then the device's login by primary key,
``feeds (user_id, day)`` and ``feeds (user_id, date)``), so a page costs its own rows, whatever the number
of users.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from kst.dates import MONTH, month_range
from storage.devices import login_is_live
from storage.models import DeviceRegistration, Feed, User


def _reachable(now: datetime) -> ColumnElement[bool]:
    return exists().where(DeviceRegistration.user_id == User.id, login_is_live(now))


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
