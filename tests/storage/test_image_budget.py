"""The daily image budget (``storage.image_budget``) on MySQL and on SQLite: bytes count for a day from
their save, replaced or deleted images included; the save that would go over is told how long until
enough of the window has passed; parallel saves of one user never get past the budget together; the
account's counted bytes go with it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select

from storage import feeds, image_budget
from storage.db import retry_deadlocks
from storage.feed_images import NewImage
from storage.feeds import NewEntry
from storage.models import Feed, FeedImageUpload, User
from tests.storage.helpers import make_user

T0 = datetime(2024, 1, 20, 12, 0, 0)
HOUR = timedelta(hours=1)
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(92)  # 100 bytes
BIG = 4 * 1024 * 1024


def _charge(engine: Engine, user_id: int, size: int, now: datetime, budget: int = 100) -> int | None:
    """``None`` when counted, else the ``Retry-After`` of the refusal."""
    try:
        with engine.begin() as conn:
            image_budget.charge(conn, user_id, size, budget, now)
    except image_budget.OverBudget as over:
        return over.retry_after
    return None


def _save(engine: Engine, user_id: int, day: int, now: datetime, budget: int, image: bytes = IMAGE) -> bool:
    """saveFeed's transactions: the image counted, then the entry of ``day`` (2024-01-dd) with it; whether
    it was stored."""
    if _charge(engine, user_id, len(image), now, budget) is not None:
        return False

    def save() -> None:
        with engine.begin() as conn:
            date = int(f"202401{day:02d}12000000")
            entry = NewEntry(user_id, date, "sunny", 3, "t", True, [], [NewImage("image/png", image)])
            feeds.save_entry(conn, entry)

    retry_deadlocks(save)
    return True


def _counted(engine: Engine, user_id: int) -> list[int]:
    with engine.connect() as conn:
        query = select(FeedImageUpload.byte_size).where(FeedImageUpload.user_id == user_id)
        return list(conn.execute(query.order_by(FeedImageUpload.id)).scalars())


def test_bytes_count_for_a_day_and_the_save_over_the_budget_waits_for_the_oldest_to_leave(
    engine: Engine,
) -> None:
    user_id, _ = make_user(engine)
    assert _charge(engine, user_id, 40, T0) is None
    assert _charge(engine, user_id, 50, T0 + HOUR) is None
    # 90 + 20 > 100: fits once the 40 of T0 leave the window, 22 hours on.
    assert _charge(engine, user_id, 20, T0 + 2 * HOUR) == 22 * 3600
    assert _charge(engine, user_id, 70, T0 + 2 * HOUR) == 23 * 3600  # needs the 50 of T0 + 1 h gone too
    assert _charge(engine, user_id, 101, T0 + 2 * HOUR) == 24 * 3600  # over the budget on its own
    assert _charge(engine, user_id, 10, T0 + 2 * HOUR) is None  # exactly the budget
    assert _counted(engine, user_id) == [40, 50, 10]
    assert _charge(engine, user_id, 1, T0 + 24 * HOUR - timedelta(seconds=1)) == 1
    # A day after T0 its 40 bytes stop counting, and go at this charge.
    assert _charge(engine, user_id, 40, T0 + 24 * HOUR) is None
    assert _counted(engine, user_id) == [50, 10, 40]


def test_replaced_and_deleted_images_still_count(engine: Engine) -> None:
    user_id, _ = make_user(engine)
    assert _save(engine, user_id, 1, T0, budget=250)
    assert _save(engine, user_id, 1, T0, budget=250)  # the same day again: its image replaced
    with engine.begin() as conn:
        assert feeds.delete_entry(conn, user_id, 2024010112000000)
    assert not _save(engine, user_id, 2, T0, budget=250)
    assert _counted(engine, user_id) == [100, 100]


def test_parallel_saves_of_one_user_store_only_what_fits(engine: Engine) -> None:
    """Six saves at once, each of another day with a 4 MiB image (written a chunk at a time after the
    count: the longer a save's transaction, the wider a race would be), under a budget of 2.5 images:
    exactly two are stored, whichever they are."""
    user_id, _ = make_user(engine)
    start = threading.Barrier(6)
    big = IMAGE + bytes(BIG - len(IMAGE))

    def save(day: int) -> bool:
        start.wait(timeout=60)
        return _save(engine, user_id, day, T0, budget=BIG * 5 // 2, image=big)

    with ThreadPoolExecutor(6) as pool:
        stored = list(pool.map(save, range(1, 7)))
    assert stored.count(True) == 2
    with engine.connect() as conn:
        count = select(func.count()).select_from(Feed).where(Feed.user_id == user_id)
        assert conn.execute(count).scalar_one() == 2
    assert _counted(engine, user_id) == [BIG, BIG]


def test_the_counted_bytes_go_with_the_account(engine: Engine) -> None:
    user_id, _ = make_user(engine)
    assert _charge(engine, user_id, 40, T0) is None
    with engine.begin() as conn:  # as resign's last step deletes it
        conn.execute(delete(User).where(User.id == user_id))
    assert _counted(engine, user_id) == []
