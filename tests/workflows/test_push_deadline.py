"""A push's retries in workflow time (time-skipping test server, real activities against the FCM emulator
and the test database): a device that keeps failing transiently, with hour-long Retry-After, fails at
its deadline; QUOTA_EXCEEDED without Retry-After waits a minute at least, doubling; a like withdrawn
before its retry, or whose author blocked the liker meanwhile, is not sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Literal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.push import PushActivities
from emulators.control import FcmEmulator
from storage import feeds, users
from temporal.push import PushOutcome, like_push, nudge_push
from tests.fixtures.waiting import eventually
from tests.workflows.push_helpers import (
    device_ids_by_token,
    liked_entry,
    liked_push,
    time_skipping_push_worker,
    tokens_of,
    user_with_devices,
)
from tests.workflows.recording import record_if_asked
from workflows.push import PushDeliveryWorkflow


@asynccontextmanager
async def push_worker(deps: ActivityDeps) -> AsyncIterator[tuple[Client, str]]:
    """A time-skipping server and a worker of ``PushDeliveryWorkflow`` with the real activities."""
    activities = PushActivities(deps)
    steps = [
        activities.device_ids,
        activities.send_to_device,
        activities.remove_device,
        activities.record_push_failure,
    ]
    async with time_skipping_push_worker(steps) as (client, queue):
        yield client, queue


async def test_transient_failures_past_the_deadline_fail_the_workflow(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    fcm_emulator.fail(token, "UNAVAILABLE", retry_after=3600)
    req = liked_push(activity_deps, owner)
    assert req.deadline_seconds == 24 * 3600
    async with push_worker(activity_deps) as (client, queue):
        handle = await client.start_workflow(
            PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PushUndelivered"
    attempts = fcm_emulator.attempts(token)
    # Retry-After: 3600 is honoured, so about one attempt per hour for 24 hours, none after.
    assert 20 <= len(attempts) <= 26, len(attempts)
    assert {a["outcome"] for a in attempts} == {"UNAVAILABLE"}
    assert tokens_of(activity_deps, owner) == [token]  # transient failures keep the token


async def test_quota_exceeded_without_retry_after_waits_a_minute_then_doubles(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    fcm_emulator.fail(token, "QUOTA_EXCEEDED", times=3)  # the local attempt and two regular ones
    req = liked_push(activity_deps, owner)
    async with push_worker(activity_deps) as (client, queue):
        handle = await client.start_workflow(
            PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
        )
        outcome = await handle.result()
        history = await handle.fetch_history()
        await record_if_asked(handle, "push_delivery_quota_backoff")
    assert outcome.sent == [device_ids_by_token(activity_deps, owner)[token]]
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["QUOTA_EXCEEDED"] * 3 + ["accepted"]
    events = list(history.events)
    # After the local first attempt: a one-minute timer before the regular activity.
    [timer] = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert timer.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == timedelta(minutes=1)
    # Its attempts 1 and 2 failed and asked for one, then two minutes: the third started 3 min later
    # (server time, skipped by the test server).
    [scheduled] = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    [started] = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert started.activity_task_started_event_attributes.attempt == 3
    waited = started.event_time.ToDatetime() - scheduled.event_time.ToDatetime()
    assert timedelta(minutes=3) <= waited < timedelta(minutes=4), waited


def _withdraw_the_like(deps: ActivityDeps, feed_id: int, liker: int, owner: int) -> None:
    with deps.engine.begin() as conn:
        assert not feeds.toggle_like(conn, feed_id, liker)


def _block_the_liker(deps: ActivityDeps, feed_id: int, liker: int, owner: int) -> None:
    with deps.sessions.begin() as session:
        users.block(session, owner, liker)


@pytest.mark.parametrize(
    ("meanwhile", "history"),
    [
        (_withdraw_the_like, "push_delivery_like_withdrawn_skipped"),  # the liker takes the like back
        (_block_the_liker, None),  # the author blocks the liker
    ],
    ids=["withdrawn", "liker-blocked"],
)
async def test_a_like_no_longer_true_before_the_retry_is_not_sent_and_the_push_completes(
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    meanwhile: Callable[[ActivityDeps, int, int, int], None],
    history: str | None,
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    fcm_emulator.fail(token, "UNAVAILABLE", times=1, retry_after=3600)  # the next attempt an hour later
    feed_id, liker, _ = liked_entry(activity_deps, owner)
    req = like_push(feed_id, liker, owner, 2024012017042712)
    async with push_worker(activity_deps) as (client, queue):
        handle = await client.start_workflow(
            PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
        )
        # Time is not skipped until the test waits for the result: the hour has not passed yet.
        await eventually(lambda: asyncio.to_thread(fcm_emulator.attempts, token), "the first attempt")
        meanwhile(activity_deps, feed_id, liker, owner)
        outcome = await handle.result()
        desc = await handle.describe()
        if history is not None:
            await record_if_asked(handle, history)
    assert (outcome.skipped, outcome.sent, outcome.label) == (
        [device_ids_by_token(activity_deps, owner)[token]],
        [],
        "skipped",
    )
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["UNAVAILABLE"]  # never sent
    assert tokens_of(activity_deps, owner) == [token]  # the device is kept
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert attrs["SosoOutcome"] == "skipped"


@pytest.mark.parametrize(
    ("kind", "period", "taken_up_after", "history"),
    [
        ("reminder", 20261203, timedelta(hours=2), "push_delivery_nudge_taken_up_late"),
        ("monthly", 202611, timedelta(hours=10), None),
    ],
    ids=["reminder-two-hours-late", "story-overnight"],
)
async def test_a_nudge_taken_up_after_its_deadline_is_not_sent(
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    kind: Literal["reminder", "monthly"],
    period: int,
    taken_up_after: timedelta,
    history: str | None,
) -> None:
    """Workers down from the fan-out on: the nudge's push, started (its deadline, an hour here, ends at
    the quiet start) but not yet taken up, is given up on when a worker takes it up after that, rather
    than telling the user at night, or on the next day, to write the day's entry."""
    user, [token] = user_with_devices(activity_deps, 1)
    req = nudge_push(kind, user, period, deadline_seconds=3600)
    activities = PushActivities(activity_deps)
    served = [
        activities.device_ids,
        activities.send_to_device,
        activities.remove_device,
        activities.record_push_failure,
    ]
    async with time_skipping_push_worker(served) as (client, queue):
        # Its first workflow task only after ``taken_up_after``, as when no worker is there to take it.
        handle = await client.start_workflow(
            PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue, start_delay=taken_up_after
        )
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
        if history is not None:
            await record_if_asked(handle, history)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PushUndelivered"
    assert cause.details == (
        PushOutcome(undelivered=[device_ids_by_token(activity_deps, user)[token]]).model_dump(),
    )
    assert fcm_emulator.attempts(token) == []  # not sent, not even tried
    assert tokens_of(activity_deps, user) == [token]  # the device stays for the next nudge


async def test_a_nudge_taken_up_late_within_its_deadline_is_sent(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    user, [token] = user_with_devices(activity_deps, 1)
    req = nudge_push("reminder", user, 20261203, deadline_seconds=3600)
    activities = PushActivities(activity_deps)
    async with time_skipping_push_worker([activities.device_ids, activities.send_to_device]) as (
        client,
        queue,
    ):
        handle = await client.start_workflow(
            PushDeliveryWorkflow.run,
            req,
            id=req.workflow_id,
            task_queue=queue,
            start_delay=timedelta(minutes=50),
        )
        outcome = await handle.result()
    assert outcome.label == "sent"
    [message] = fcm_emulator.messages(token)
    assert message["message"]["data"] == {"kind": "reminder", "day": "20261203"}
