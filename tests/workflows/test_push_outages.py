"""A database that refuses for a while only delays a push: its own steps (the device lookup, a dead
token's removal) are retried within its deadline, and a removal that never gets through does not fail the
push to the other devices (time-skipping test server, so the retries' backoffs pass without waiting;
real activities, the database behind a proxy the test makes refuse; counted refusals, never time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from activities.deps import ActivityDeps
from activities.push import PushActivities
from config import Settings
from emulators.control import FcmEmulator
from temporal.push import PushOutcome, PushRequest
from tests.fixtures.refusing_proxy import RefusingProxy, refusing_database
from tests.fixtures.waiting import eventually
from tests.workflows.push_helpers import (
    device_ids_by_token,
    liked_push,
    time_skipping_push_worker,
    tokens_of,
    user_with_devices,
)
from tests.workflows.recording import record_if_asked
from workflows.push import PushDeliveryWorkflow

#: More connections refused than the 5 attempts a step made before it failed the push.
REFUSALS = 12


@contextmanager
def database_down(settings: Settings) -> Iterator[tuple[RefusingProxy, ActivityDeps]]:
    """Activity clients whose database is behind a proxy that refuses from the start."""
    assert settings.database_url
    with refusing_database(settings.database_url) as (proxy, url):
        deps = ActivityDeps.open(settings.model_copy(update={"database_url": url}))
        proxy.refuse()
        try:
            yield proxy, deps
        finally:
            deps.close()


@asynccontextmanager
async def push_worker(activities: list[Any]) -> AsyncIterator[tuple[Client, str]]:
    """A time-skipping server and a worker of ``PushDeliveryWorkflow`` with ``activities``."""
    async with time_skipping_push_worker(activities) as (client, queue):
        yield client, queue


async def _outcome_once_back(handle: WorkflowHandle[Any, PushOutcome], proxy: RefusingProxy) -> PushOutcome:
    """The push's outcome, the database let back once it refused ``REFUSALS`` connections (or the push
    ended before: then it stays refused and the push's own result tells)."""
    result = asyncio.ensure_future(handle.result())  # lets the server skip the backoffs
    await eventually(
        lambda: asyncio.sleep(0, proxy.refused >= REFUSALS or result.done()), "refusals or the push's end"
    )
    if not result.done():
        proxy.resume()
    return await result


def _all(push: PushActivities) -> list[Any]:
    return [push.device_ids, push.send_to_device, push.remove_device, push.record_push_failure]


async def test_a_push_waits_out_a_database_outage_for_its_devices(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    req = liked_push(activity_deps, owner)
    with database_down(settings) as (proxy, down):
        async with push_worker(_all(PushActivities(down))) as (client, queue):
            handle = await client.start_workflow(
                PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
            )
            outcome = await _outcome_once_back(handle, proxy)
            history = await handle.fetch_history()
            await record_if_asked(handle, "push_delivery_lookup_through_outage")
    assert proxy.refused >= REFUSALS
    assert outcome.sent == [device_ids_by_token(activity_deps, owner)[token]]
    assert len(fcm_emulator.messages(token)) == 1
    # The lookup's backoffs waited on workflow timers, up to a minute each: none held a workflow task.
    timers = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToSeconds()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert len(timers) >= REFUSALS - 3 and max(timers) <= 60, timers


def _removal_down(deps: ActivityDeps, down: ActivityDeps) -> list[Any]:
    """The push's activities with only the removal of devices on the refusing database."""
    push = PushActivities(deps)
    return [
        push.device_ids,
        push.send_to_device,
        PushActivities(down).remove_device,
        push.record_push_failure,
    ]


async def test_a_dead_tokens_removal_is_retried_through_an_outage(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [dead, alive] = user_with_devices(activity_deps, 2)
    ids = device_ids_by_token(activity_deps, owner)
    fcm_emulator.fail(dead, "UNREGISTERED")
    req = liked_push(activity_deps, owner)
    with database_down(settings) as (proxy, down):
        async with push_worker(_removal_down(activity_deps, down)) as (client, queue):
            handle = await client.start_workflow(
                PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
            )
            outcome = await _outcome_once_back(handle, proxy)
    assert proxy.refused >= REFUSALS
    assert (outcome.sent, outcome.removed) == ([ids[alive]], [ids[dead]])
    assert tokens_of(activity_deps, owner) == [alive]  # removed once the database was back


@pytest.mark.parametrize("deadline_seconds", [600, 3600])
async def test_a_removal_that_never_gets_through_does_not_fail_the_push(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, deadline_seconds: int
) -> None:
    owner, [dead, alive] = user_with_devices(activity_deps, 2)
    ids = device_ids_by_token(activity_deps, owner)
    fcm_emulator.fail(dead, "UNREGISTERED")
    req: PushRequest = liked_push(activity_deps, owner).model_copy(
        update={"deadline_seconds": deadline_seconds}
    )
    with database_down(settings) as (proxy, down):
        async with push_worker(_removal_down(activity_deps, down)) as (client, queue):
            handle = await client.start_workflow(
                PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
            )
            outcome = await handle.result()  # the database never comes back
            if deadline_seconds == 600:
                await record_if_asked(handle, "push_delivery_removal_never_through")
    assert proxy.refused >= REFUSALS
    assert (outcome.sent, outcome.removed, outcome.label) == ([ids[alive]], [ids[dead]], "sent-token-removed")
    assert len(fcm_emulator.messages(alive)) == 1
    assert tokens_of(activity_deps, owner) == [dead, alive]  # left for the next push to it to remove
