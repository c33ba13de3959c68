"""Each user's daily image budget: how many bytes of images saveFeed stores for one user in any rolling
day (``SOSOHAPPY_IMAGE_BYTES_PER_USER_PER_DAY``), counted in the database, so it holds across API replicas.

A save with images adds a row to ``feed_image_uploads`` (its user, time and bytes) in the save's
transaction; the bytes count for ``WINDOW`` from then on, whatever becomes of the images: replaced or
deleted, they were written (chunks, binlog), and that is the cost the budget bounds. ``charge`` sums and
adds under the user's row lock (MySQL: ``SELECT … FOR UPDATE`` on ``users``; SQLite: its one writer at a
time, taken by the first write), so parallel saves of one user are counted one after another and never
both slip under the budget. A user's rows older than the window go at their next charge, the rest with
the account (the foreign key cascades when resign deletes it).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select

from storage.models import FeedImageUpload, User

#: How long stored image bytes count against their user's budget.
WINDOW = timedelta(days=1)


def charge(conn: Connection, user_id: int, byte_size: int, budget: int, now: datetime) -> int | None:
    """Count ``byte_size`` new image bytes of the user at ``now`` (naive UTC), in the caller's transaction,
    when they fit ``budget`` with the bytes counted in the window before: ``None``. Otherwise nothing is
    counted, and the answer is the whole seconds until enough of the window has passed for them to fit
    (``WINDOW`` when they alone are over the budget)."""
    now = now.replace(microsecond=0)  # as MySQL's DATETIME keeps it
    since = now - WINDOW
    conn.execute(select(User.id).where(User.id == user_id).with_for_update())
    # A write, so on SQLite also the transaction's write lock: the sum below is read holding it.
    conn.execute(
        delete(FeedImageUpload).where(
            FeedImageUpload.user_id == user_id, FeedImageUpload.uploaded_at <= since
        )
    )
    counted = conn.execute(
        select(FeedImageUpload.uploaded_at, FeedImageUpload.byte_size)
        .where(FeedImageUpload.user_id == user_id, FeedImageUpload.uploaded_at > since)
        .order_by(FeedImageUpload.uploaded_at)
    ).all()
    used = sum(size for _, size in counted)
    if used + byte_size <= budget:
        conn.execute(insert(FeedImageUpload).values(user_id=user_id, uploaded_at=now, byte_size=byte_size))
        return None
    for uploaded_at, size in counted:  # the oldest leave the window first
        used -= size
        if used + byte_size <= budget:
            return max(1, math.ceil((uploaded_at + WINDOW - now).total_seconds()))
    return math.ceil(WINDOW.total_seconds())
