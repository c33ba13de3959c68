"""``SOSOHAPPY_TEMPORAL_TASK_QUEUE_PREFIX`` and ``SOSOHAPPY_PUSH_DEADLINE_SECONDS`` do what they say: an API and
a worker under another prefix sign users in and deliver a like's push on their own queues, and the push
workflow's input carries the deadline of the settings."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import select

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from storage.models import Feed
from temporal import task_queues
from temporal.client import connect
from temporal.push import PushRequest
from tests.api.feed_helpers import kst, like, member, unique_year, user_id
from tests.fixtures.app import BackgroundWorker
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.emulators import FcmEmulator


def test_names_take_the_prefix() -> None:
    assert task_queues.named(task_queues.PUSH, "blue") == "blue-push"
    assert task_queues.named(task_queues.ACCOUNTS, task_queues.DEFAULT_PREFIX) == task_queues.ACCOUNTS
    with pytest.raises(ValueError):
        task_queues.named("other-queue", "blue")


async def _started(settings: Settings, workflow_id: str) -> tuple[str, str, PushRequest]:
    client = await connect(settings)
    handle = client.get_workflow_handle(workflow_id)
    await handle.result()
    described = await handle.describe()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (request,) = await client.data_converter.decode(started.input.payloads, [PushRequest])
    return described.task_queue, started.task_queue.name, request


def test_a_prefixed_api_and_worker_deliver_a_like_on_their_own_queue(
    settings: Settings, fcm_emulator: FcmEmulator
) -> None:
    prefix = f"q{uuid.uuid4().hex[:8]}"
    prefixed = settings.model_copy(
        update={"temporal_task_queue_prefix": prefix, "push_deadline_seconds": 4321}
    )
    deps = ActivityDeps.open(prefixed)
    worker = BackgroundWorker(prefixed, deps)
    worker.start()
    try:
        with (
            serve_in_thread(create_app(prefixed), http="h11") as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            author, fan, year = member(http), member(http), unique_year()  # sign-ins on <prefix>-accounts
            date = kst(year, 3, 14)
            assert author.save_feed(date).status_code == 200
            assert like(fan, author.nickname, date).json() == {"like": True}
            deadline = time.monotonic() + 60
            while not fcm_emulator.messages(author.device_token) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(fcm_emulator.messages(author.device_token)) == 1
            with deps.sessions() as s:
                feed_id = s.scalars(
                    select(Feed.id).where(Feed.user_id == user_id(deps, author.nickname))
                ).one()
            workflow_id = f"push:like:{feed_id}:{user_id(deps, fan.nickname)}"
            queue, started_on, request = asyncio.run(_started(prefixed, workflow_id))
    finally:
        worker.stop()
        deps.close()
    assert queue == started_on == f"{prefix}-push"
    assert request.deadline_seconds == 4321
