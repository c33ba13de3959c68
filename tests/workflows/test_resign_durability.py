"""A worker killed (SIGKILL) in the middle of a resign, and started again, finishes the resign: between
two attempts of a step, and in the middle of the feed deletion (a step that had deleted some feeds
when it died runs again, and the result still counts every feed the user had).

Runs on its own Temporal dev server so that only the worker process under test polls the queue.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.deps import ActivityDeps
from activities.resign import FEED_BATCH
from config import Settings
from devstack.processes import ManagedProcess, free_port
from emulators.control import AppleEmulator
from storage import users
from storage.models import Feed, FeedCategory, User
from temporal import search_attributes as sa
from temporal.accounts import ResignInput
from temporal.client import connect
from temporal.devserver import start_dev_args, wait_until_serving
from temporal.ids import resign_workflow_id
from temporal.task_queues import ACCOUNTS
from tests.fixtures.waiting import eventually
from tests.workflows.test_resign import NOW
from workflows.resign import ResignWorkflow

ROOT = Path(__file__).resolve().parents[2]


def _worker(settings: Settings, address: str, log: Path) -> ManagedProcess:
    env = {
        "SOSOHAPPY_ENV": "test",
        "SOSOHAPPY_TEMPORAL_ADDRESS": address,
        "SOSOHAPPY_DATABASE_URL": settings.sqlalchemy_url,
        "SOSOHAPPY_MONGO_URL": settings.mongo_url,
        "SOSOHAPPY_MONGO_DATABASE": settings.mongo_database,
        "SOSOHAPPY_APPLE_BASE_URL": settings.apple_base_url,
        "SOSOHAPPY_APPLE_PRIVATE_KEY": settings.apple_private_key or "",
        # No fixed port: a `make run` (or any worker) on this machine holds the defaults.
        "SOSOHAPPY_WORKER_METRICS_PORT": "0",
        "SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT": "0",
    }
    return ManagedProcess("worker", [sys.executable, "-m", "workers.main"], log, env=env, cwd=ROOT).start()


@asynccontextmanager
async def _dev_server(tmp_path: Path) -> AsyncIterator[str]:
    """A Temporal dev server of this test's own; its address."""
    port = free_port()
    args = start_dev_args(port=port, ui_port=None, db_file=tmp_path / "t.db")
    server = ManagedProcess("temporal", args, tmp_path / "temporal.log").start()
    try:
        server.wait_for_port(port, timeout=90)
        wait_until_serving(f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


def _feeds(user_id: int, days: range) -> list[Feed]:
    return [
        Feed(
            user_id=user_id,
            day=20240100 + d,
            date=(20240100 + d) * 10**8,
            weather="sunny",
            happiness=3,
            text=None,
            is_public=False,
            created_at=NOW,
            updated_at=NOW,
        )
        for d in days
    ]


@pytest.mark.slow
async def test_killed_worker_resumes_the_resign(
    settings: Settings, activity_deps: ActivityDeps, apple_emulator: AppleEmulator, tmp_path: Path
) -> None:
    worker: ManagedProcess | None = None
    async with _dev_server(tmp_path) as address:
        try:
            with activity_deps.sessions.begin() as s:
                user = users.upsert_account(
                    s, f"k{uuid.uuid4().hex[:8]}@icloud.com+apple", "apple", "s", "apple-rt-1"
                )
                user_id = user.id
                s.add_all(_feeds(user_id, range(1, 29)))
            apple_emulator.fail("revoke", 503)  # the resign stalls, retrying Apple, while we kill the worker
            client = await connect(settings.model_copy(update={"temporal_address": address}))
            handle = await _start(client, user_id, "apple")
            worker = _worker(settings, address, tmp_path / "worker1.log")

            async def tried_apple() -> bool:
                pending = (await handle.describe()).raw_description.pending_activities
                return bool(pending) and pending[0].attempt > 1

            # The worker is a new process: slow to start on a loaded machine.
            await eventually(tried_apple, "the resign reaching the Apple step")
            worker.stop(timeout=0)  # SIGTERM then SIGKILL at once: no graceful drain
            apple_emulator.reset()
            with activity_deps.sessions() as s:
                assert s.get(User, user_id) is not None  # nothing was deleted past the stalled step

            worker = _worker(settings, address, tmp_path / "worker2.log")
            result = await asyncio.wait_for(handle.result(), timeout=300)
            assert result.apple == "revoked" and result.feeds_deleted == 28
            _assert_gone(activity_deps, user_id)
        finally:
            if worker is not None:
                worker.stop()


@pytest.mark.slow
async def test_a_worker_killed_while_deleting_feeds_leaves_a_resign_that_counts_every_feed(
    settings: Settings, activity_deps: ActivityDeps, tmp_path: Path
) -> None:
    """The feed step commits its first batch, then waits on a row lock the test holds on a category of
    a feed of the second; the worker is killed there. The step's next attempt (on a new worker, once its heartbeat
    is overdue) deletes the rest, and every later step (messages, devices, account) runs once with
    nothing deleted twice; the result counts the feeds of both attempts."""
    total = FEED_BATCH + 20
    worker: ManagedProcess | None = None
    async with _dev_server(tmp_path) as address:
        try:
            with activity_deps.sessions.begin() as s:
                user_id = users.upsert_account(s, f"k{uuid.uuid4().hex[:8]}@gmail.com", "kakao", "s", None).id
                s.add_all(_feeds(user_id, range(total)))
            with activity_deps.sessions.begin() as s:
                last = s.scalar(select(func.max(Feed.id)).where(Feed.user_id == user_id))
                s.add(FeedCategory(feed_id=last, position=0, category="daily"))
            client = await connect(settings.model_copy(update={"temporal_address": address}))
            with activity_deps.engine.connect() as locker:
                # The second batch's delete cascades to this row, and waits (the first batch's does not).
                category = (FeedCategory.feed_id == last) & (FeedCategory.position == 0)
                locker.execute(select(FeedCategory.category).where(category).with_for_update())
                handle = await _start(client, user_id, "kakao")
                worker = _worker(settings, address, tmp_path / "worker1.log")

                async def first_batch_recorded() -> bool:
                    pending = (await handle.describe()).raw_description.pending_activities
                    return bool(pending) and pending[0].HasField("last_heartbeat_time")

                await eventually(first_batch_recorded, "the feed step's first batch and heartbeat")
                worker.stop(timeout=0)  # SIGKILL while the second batch waits on the lock
                with activity_deps.sessions() as s:
                    left = s.scalar(select(func.count()).where(Feed.user_id == user_id))
                assert left == total - FEED_BATCH
                locker.rollback()

            worker = _worker(settings, address, tmp_path / "worker2.log")
            result = await asyncio.wait_for(handle.result(), timeout=300)
            assert result.feeds_deleted == total
            _assert_gone(activity_deps, user_id)
        finally:
            if worker is not None:
                worker.stop()


def _assert_gone(deps: ActivityDeps, user_id: int) -> None:
    with deps.sessions() as s:
        assert s.get(User, user_id) is None
        assert s.scalars(select(Feed.id).where(Feed.user_id == user_id)).all() == []


async def _start(client: Client, user_id: int, provider: str) -> WorkflowHandle:
    token = "apple-rt-1" if provider == "apple" else None
    return await client.start_workflow(
        ResignWorkflow.run,
        ResignInput(
            user_id=user_id, account_email="x", nickname=None, provider=provider, apple_refresh_token=token
        ),
        id=resign_workflow_id(user_id),
        task_queue=ACCOUNTS,
        search_attributes=TypedSearchAttributes([SearchAttributePair(sa.USER_ID, str(user_id))]),
    )
