"""Parallel block requests of one pair: each is answered, none with the 503 of a deadlock.

Two requests blocking the same user while a third transaction holds the row uncommitted both wait for
it; when it rolls back, they are granted the row together and each waits for the other: InnoDB's
classic duplicate-insert deadlock, which parallel block and unblock taps of one pair also run into
(a few in a thousand). The test holds that third transaction itself, so the deadlock happens every run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from activities.deps import ActivityDeps
from config import Settings
from storage import users
from storage.db import create_db_engine
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import wait_until


@pytest.fixture
def locker(settings: Settings) -> Iterator[Engine]:
    """An engine of the test's own for holding the row the API then waits for."""
    engine = create_db_engine(settings.sqlalchemy_url, pool_size=2)
    yield engine
    engine.dispose()


def _waiting_inserts(conn: Any, blocker_id: int, blocked_id: int) -> int:
    """How many statements on this test database (other than ``conn``'s) are inserting this block: while
    the test holds the row uncommitted, running means waiting for it."""
    rows = conn.execute(
        text(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND ID <> CONNECTION_ID() AND COMMAND = 'Query' AND INFO LIKE 'INSERT INTO blocks%'"
        )
    )
    return sum(1 for (info,) in rows if f"({blocker_id}, {blocked_id}," in info)


def test_parallel_blocks_of_one_pair_all_succeed_through_a_deadlock(
    http: httpx.Client, activity_deps: ActivityDeps, locker: Engine
) -> None:
    me = IOSClient(http).sign_up("b" + uuid.uuid4().hex[:8])
    them = IOSClient(http).sign_up("t" + uuid.uuid4().hex[:8])
    with activity_deps.sessions() as session:
        me_id, them_id = users.id_of(session, me.nickname), users.id_of(session, them.nickname)
    assert me_id is not None and them_id is not None
    parts = [("srcNickname", me.nickname), ("dstNickname", them.nickname)]

    with locker.connect() as holder, locker.connect() as watcher, ThreadPoolExecutor(2) as pool:
        holder.execute(
            text("INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES (:a, :b, NOW())"),
            {"a": me_id, "b": them_id},
        )
        taps = [pool.submit(me.post_multipart, "/auth-service/block", parts) for _ in range(2)]
        wait_until(
            lambda: _waiting_inserts(watcher, me_id, them_id) == 2,
            "both block requests waiting for the held row",
        )
        holder.rollback()  # both are granted the row at once, and deadlock
        answers = [tap.result() for tap in taps]

    assert [(a.status_code, a.json()) for a in answers] == [(200, {"success": True})] * 2
    with activity_deps.sessions() as session:
        assert users.blocked_ids(session, me_id) == {them_id}
