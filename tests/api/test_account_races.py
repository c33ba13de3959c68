"""Account requests racing each other, made to race every run: the test holds the row they need on a
connection of its own, waits until they wait for it (``PROCESSLIST``), then lets go.

- Parallel block requests of one pair: each is answered, none with the 503 of a deadlock. Two requests
  blocking the same user while a third transaction holds the row uncommitted both wait for it; when it
  rolls back, they are granted the row together and each waits for the other: InnoDB's classic
  duplicate-insert deadlock, which parallel block and unblock taps of one pair also run into (a few in
  a thousand).
- A profile change racing the account's resign: the resign commits while setProfile waits for the row.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from activities.deps import ActivityDeps
from storage import logins, users
from tests.fixtures.databases import running
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import wait_until


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
            lambda: running(watcher, "INSERT INTO blocks%", f"({me_id}, {them_id},") == 2,
            "both block requests waiting for the held row",
        )
        holder.rollback()  # both are granted the row at once, and deadlock
        answers = [tap.result() for tap in taps]

    assert [(a.status_code, a.json()) for a in answers] == [(200, {"success": True})] * 2
    with activity_deps.sessions() as session:
        assert users.blocked_ids(session, me_id) == {them_id}


def test_a_profile_change_that_waited_for_the_accounts_resign_changes_nothing(
    http: httpx.Client, activity_deps: ActivityDeps, locker: Engine
) -> None:
    """The token was valid when setProfile checked it; the resign commits before setProfile takes the
    row. The resigning account must not claim a nickname (nobody else could take it until the resign's
    last step) nor change its profile."""
    me = IOSClient(http).sign_up("r" + uuid.uuid4().hex[:8])
    wanted = "w" + uuid.uuid4().hex[:8]
    with activity_deps.sessions() as session:
        me_id = users.id_of(session, me.nickname)
    assert me_id is not None

    with Session(locker) as holder, locker.connect() as watcher, ThreadPoolExecutor(1) as pool:
        row = users.by_id_locked(holder, me_id)
        assert row is not None
        change = pool.submit(
            me.post_multipart,
            "/auth-service/setProfile",
            [("email", me.email), ("nickname", wanted), ("introduction", "still here")],
        )
        wait_until(
            lambda: running(watcher, "SELECT%FROM users%FOR UPDATE", f"users.id = {me_id} FOR UPDATE") == 1,
            "setProfile waiting for the account row",
        )
        users.release_sign_in_key(row)  # what POST /auth-service/resign commits
        logins.revoke_user_sessions(holder, me_id)
        holder.commit()
        answer = change.result()

    assert answer.status_code == 403, answer.text
    with activity_deps.sessions() as session:
        stored = users.by_id(session, me_id)
        assert stored is not None and users.is_resigning(stored)
        assert (stored.nickname, stored.introduction) == (me.nickname, "")
        assert users.id_of(session, wanted) is None
