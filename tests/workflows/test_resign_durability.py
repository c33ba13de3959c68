"""A worker killed (SIGKILL) in the middle of a resign, and started again, finishes the resign: between
two attempts of a step, in the middle of the feed deletion (a step that had deleted some feeds when it
died runs again, and the result still counts every feed the user had), and in the middle of the message
deletion (the step goes to the new worker once its heartbeat is overdue, not after its 5 minute timeout).

Runs on its own Temporal dev server so that only the worker process under test polls the queue.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from bson import ObjectId
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import ActivityTaskStartedEventAttributes
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.deps import ActivityDeps
from activities.resign import FEED_BATCH
from config import Settings
from devstack.processes import ManagedProcess, free_port
from dm.messages import DELETE_BATCH, Party, StoredMessage
from emulators.control import AppleEmulator
from storage import users
from storage.models import Feed, FeedCategory, User
from temporal import search_attributes as sa
from temporal.accounts import ResignInput
from temporal.client import connect
from temporal.devserver import start_dev_args, wait_until_serving
from temporal.ids import resign_workflow_id
from temporal.task_queues import ACCOUNTS
from tests.api.test_mongo_outage import _mongo_behind
from tests.fixtures.holding_proxy import holding_proxy
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
            user_id = _kakao_user(activity_deps)
            with activity_deps.sessions.begin() as s:
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

                def left() -> int | None:
                    with activity_deps.sessions() as s:
                        return s.scalar(select(func.count()).where(Feed.user_id == user_id))

                async def first_batch_done() -> bool:  # its count heartbeated, its first batch committed
                    return await _heartbeat_recorded(handle) and left() == total - FEED_BATCH

                await eventually(first_batch_done, "the feed step's count and first batch")
                worker.stop(timeout=0)  # SIGKILL while the second batch waits on the lock
                assert left() == total - FEED_BATCH
                locker.rollback()

            worker = _worker(settings, address, tmp_path / "worker2.log")
            result = await asyncio.wait_for(handle.result(), timeout=300)
            assert result.feeds_deleted == total
            _assert_gone(activity_deps, user_id)
        finally:
            if worker is not None:
                worker.stop()


@pytest.mark.slow
async def test_a_worker_killed_while_deleting_messages_leaves_the_step_to_another_within_its_heartbeat(
    settings: Settings, activity_deps: ActivityDeps, tmp_path: Path
) -> None:
    """The message step deletes its first batch, then the second batch's delete is held by a proxy
    between the worker and MongoDB, and the worker is killed there. Temporal gives the step to a new
    worker once its heartbeat is overdue (``BATCH_HEARTBEAT``), not after its 5 minute timeout: the
    attempt that finished records a heartbeat timeout as its last failure, and the resign completes,
    counting every message."""
    total = DELETE_BATCH + 20
    worker: ManagedProcess | None = None
    async with _dev_server(tmp_path) as address:
        try:
            user_id = _kakao_user(activity_deps)
            activity_deps.messages.insert_many(_messages(user_id, total))
            client = await connect(settings.model_copy(update={"temporal_address": address}))
            target = urlsplit(settings.mongo_url)
            with holding_proxy(target.hostname or "127.0.0.1", target.port or 27017, "delete", 2) as proxy:
                handle = await _start(client, user_id, "kakao")
                worker = _worker(_mongo_behind(settings, proxy.port), address, tmp_path / "worker1.log")

                async def second_batch_held() -> bool:
                    # The count is recorded (the step's first heartbeat) before the first batch goes.
                    return proxy.held.is_set() and await _heartbeat_recorded(handle)

                await eventually(second_batch_held, "the message step's second batch")
                worker.stop(timeout=0)  # SIGKILL while the second batch waits for MongoDB's answer
            assert activity_deps.messages.count_of(user_id, None) == total - DELETE_BATCH

            worker = _worker(settings, address, tmp_path / "worker2.log")
            # Expected within the heartbeat timeout (30 s) and a few seconds of steps after it; the
            # deadline leaves a loaded machine four times that, and an attempt retried only after its
            # start-to-close timeout (the old options: 5 minutes) fails here instead of passing late.
            result = await asyncio.wait_for(handle.result(), timeout=120)
            assert result.messages_deleted == total
            assert activity_deps.messages.count_of(user_id, None) == 0
            _assert_gone(activity_deps, user_id)
            retried = await _finished_attempt(handle, "resign_delete_user_messages")
            assert retried.attempt == 2
            assert (
                retried.last_failure.timeout_failure_info.timeout_type == TimeoutType.TIMEOUT_TYPE_HEARTBEAT
            )
        finally:
            if worker is not None:
                worker.stop()


def _kakao_user(deps: ActivityDeps) -> int:
    with deps.sessions.begin() as s:
        return users.upsert_account(s, f"k{uuid.uuid4().hex[:8]}@gmail.com", "kakao", "s", None).id


async def _heartbeat_recorded(handle: WorkflowHandle) -> bool:
    """Whether the step running has a heartbeat recorded."""
    pending = (await handle.describe()).raw_description.pending_activities
    return bool(pending) and pending[0].HasField("last_heartbeat_time")


def _messages(user_id: int, count: int) -> list[tuple[Party, Party, StoredMessage]]:
    """``count`` messages of the user with someone else, half sent, half received."""
    user, other = Party(user_id, "u"), Party(0, "o")
    stored = []
    for n in range(count):
        sender, receiver = (user, other) if n % 2 else (other, user)
        message = StoredMessage(str(ObjectId()), sender.id, receiver.id, n, "hi")
        stored.append((sender, receiver, message))
    return stored


async def _finished_attempt(handle: WorkflowHandle, activity_type: str) -> ActivityTaskStartedEventAttributes:
    """The started event of the first ``activity_type`` step: the attempt that finished, and the
    failure of the one before it."""
    events = (await handle.fetch_history()).events
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return next(
        e.activity_task_started_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] == activity_type
    )


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
