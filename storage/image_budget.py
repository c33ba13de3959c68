"""Each user's daily image budget: how many bytes of images saveFeed stores for one user in any rolling
day (``SOSOHAPPY_IMAGE_BYTES_PER_USER_PER_DAY``), counted in the database, so it holds across API replicas.

A save with images first adds a row to ``feed_image_uploads`` (its user, time and bytes) in a short
transaction of its own (``charge``), then writes the entry in another; a save that fails after its
charge takes its row back (``refund``). The bytes count for ``WINDOW`` from then on, whatever becomes of
the images: replaced or deleted, they were written (chunks, binlog), and that is the cost the budget
bounds. ``charge`` sums and adds under the user's row lock (MySQL: ``SELECT … FOR UPDATE`` on ``users``;
SQLite: its one writer at a time, taken by the first write), so parallel saves of one user are counted
one after another and never both slip under the budget; the lock lasts that transaction only, not the
image writes, so nothing else referring to the user (their likes, DM rooms, logins) waits on an upload.
A user's rows older than the window go at their next charge, the rest with the account (the foreign key
cascades when resign deletes it).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select

from storage.models import FeedImageUpload, User

#: How long stored image bytes count against their user's budget.
WINDOW = timedelta(days=1)


class OverBudget(Exception):
    """The bytes do not fit the user's budget; ``retry_after``: the whole seconds until enough of the
    window has passed for them to (``WINDOW`` when they alone are over the budget)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"over the image budget for {retry_after} s")
        self.retry_after = retry_after


def charge(conn: Connection, user_id: int, byte_size: int, budget: int, now: datetime) -> int:
    """Count ``byte_size`` new image bytes of the user at ``now`` (naive UTC), in the caller's transaction,
    when they fit ``budget`` with the bytes counted in the window before, and answer the count's id (for
    ``refund``); otherwise count nothing and raise ``OverBudget``."""
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
        counted_now = insert(FeedImageUpload).values(user_id=user_id, uploaded_at=now, byte_size=byte_size)
        return int(conn.execute(counted_now.returning(FeedImageUpload.id)).scalar_one())
    for uploaded_at, size in counted:  # the oldest leave the window first
        used -= size
        if used + byte_size <= budget:
            raise OverBudget(max(1, math.ceil((uploaded_at + WINDOW - now).total_seconds())))
    raise OverBudget(math.ceil(WINDOW.total_seconds()))


def refund(conn: Connection, upload_id: int) -> None:
    """Take back the count ``upload_id`` of a save that stored nothing (a no-op when already gone)."""
    conn.execute(delete(FeedImageUpload).where(FeedImageUpload.id == upload_id))
