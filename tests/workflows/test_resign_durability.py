"""A worker killed (SIGKILL) in the middle of a resign, and started again, finishes the resign.

Runs on its own Temporal dev server so that only the worker process under test polls the queue.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.deps import ActivityDeps
from config import Settings
from devstack.processes import ManagedProcess, free_port
from emulators.control import AppleEmulator
from storage import users
from storage.models import Feed, User
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


@pytest.mark.slow
async def test_killed_worker_resumes_the_resign(
    settings: Settings, activity_deps: ActivityDeps, apple_emulator: AppleEmulator, tmp_path: Path
) -> None:
    port = free_port()
    server = ManagedProcess(
        "temporal",
        start_dev_args(port=port, ui_port=None, db_file=tmp_path / "t.db"),
        tmp_path / "temporal.log",
    ).start()
    worker: ManagedProcess | None = None
    try:
        server.wait_for_port(port, timeout=90)
        wait_until_serving(f"127.0.0.1:{port}")
        address = f"127.0.0.1:{port}"
        with activity_deps.sessions.begin() as s:
            user = users.upsert_account(
                s, f"k{uuid.uuid4().hex[:8]}@icloud.com+apple", "apple", "s", "apple-rt-1"
            )
            user_id = user.id
            s.add_all(
                [
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
                    for d in range(1, 29)
                ]
            )
        apple_emulator.fail("revoke", 503)  # the resign stalls, retrying Apple, while we kill the worker
        client = await connect(settings.model_copy(update={"temporal_address": address}))
        handle = await client.start_workflow(
            ResignWorkflow.run,
            ResignInput(
                user_id=user_id,
                account_email="x",
                nickname=None,
                provider="apple",
                apple_refresh_token="apple-rt-1",
            ),
            id=resign_workflow_id(user_id),
            task_queue=ACCOUNTS,
            search_attributes=TypedSearchAttributes([SearchAttributePair(sa.USER_ID, str(user_id))]),
        )
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
        with activity_deps.sessions() as s:
            assert s.get(User, user_id) is None
            assert s.scalars(select(Feed.id).where(Feed.user_id == user_id)).all() == []
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
