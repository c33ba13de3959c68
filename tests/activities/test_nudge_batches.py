"""A nudge batch (``nudge_push_batch``) called as the worker calls it, against the dev server and the test
database: a batch taken up after its deadline (workers down since the run scheduled it) starts no push,
and one slowed past it stops there with its cursor before the users it left, so no one is reminded at
night or of yesterday, and no one is skipped by the run's next batch."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

import activities.nudges as nudge_activities
from activities.deps import ActivityDeps
from activities.nudges import NudgeActivities
from temporal.ids import reminder_push_workflow_id
from temporal.nudges import BatchSent, PushBatch, RecipientsPage
from tests.workflows.nudge_helpers import reachable_user

DAY = 20261203


def _batch(user_ids: list[int], deadline_seconds: int = 3600) -> PushBatch:
    """The reminder batch of exactly ``user_ids`` (consecutive new users)."""
    page = RecipientsPage(
        kind="reminder", period=DAY, after_user_id=user_ids[0] - 1, last_user_id=user_ids[-1], limit=10
    )
    return PushBatch(page=page, deadline_seconds=deadline_seconds)


def _env(client: Client, waited: timedelta) -> ActivityEnvironment:
    """The activity's environment on a task queue no worker polls (the pushes it starts stay there),
    its attempt taken up ``waited`` after the run scheduled it (server times)."""
    env = ActivityEnvironment(client=client)
    now = datetime.now(UTC)
    env.info = dataclasses.replace(
        env.info,
        task_queue=f"nudge-batch-{uuid.uuid4().hex[:8]}",
        scheduled_time=now - waited,
        current_attempt_scheduled_time=now - waited,
        started_time=now,
    )
    return env


async def _started(client: Client, user_id: int) -> bool:
    try:
        await client.get_workflow_handle(reminder_push_workflow_id(user_id, DAY)).describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


@pytest.fixture
def users_due(activity_deps: ActivityDeps, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Three new reachable users without an entry of ``DAY``. No worker runs their pushes: the batch
    does not wait for them (it paces by their ends)."""
    monkeypatch.setattr(nudge_activities, "PACE_SECONDS", 0.01)
    yield [reachable_user(activity_deps)[0] for _ in range(3)]


async def _terminate(client: Client, user_ids: list[int]) -> None:
    for user_id in user_ids:
        if await _started(client, user_id):
            await client.get_workflow_handle(reminder_push_workflow_id(user_id, DAY)).terminate("test over")


async def test_a_batch_taken_up_after_its_deadline_starts_no_push_and_keeps_its_cursor(
    activity_deps: ActivityDeps, temporal_client: Client, users_due: list[int]
) -> None:
    env = _env(temporal_client, waited=timedelta(hours=2))
    try:
        sent: BatchSent = await env.run(NudgeActivities(activity_deps).push_batch, _batch(users_due))
        assert sent == BatchSent(users=0, last_user_id=None, done=False, started=0, already_sent=0)
        assert [await _started(temporal_client, u) for u in users_due] == [False, False, False]
    finally:
        await _terminate(temporal_client, users_due)


async def test_a_batch_in_time_starts_every_push_with_what_is_left_of_its_deadline(
    activity_deps: ActivityDeps, temporal_client: Client, users_due: list[int]
) -> None:
    env = _env(temporal_client, waited=timedelta(minutes=20))
    try:
        sent: BatchSent = await env.run(NudgeActivities(activity_deps).push_batch, _batch(users_due))
        assert (sent.users, sent.started, sent.late, sent.done) == (3, 3, 0, True)
        assert sent.last_user_id == users_due[-1]
        assert [await _started(temporal_client, u) for u in users_due] == [True, True, True]
    finally:
        await _terminate(temporal_client, users_due)


async def test_a_batch_slowed_past_its_deadline_stops_before_the_users_it_left(
    activity_deps: ActivityDeps,
    temporal_client: Client,
    users_due: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The batch's own clock: its start, then the users' turns at 0, 25 and 75 minutes (a slow FCM).
    ticks = iter([0.0, 0.0, 0.0, 25 * 60.0, 75 * 60.0])
    monkeypatch.setattr(nudge_activities, "_clock", lambda: next(ticks), raising=False)
    env = _env(temporal_client, waited=timedelta(0))
    try:
        sent: BatchSent = await env.run(NudgeActivities(activity_deps).push_batch, _batch(users_due))
        # Deadline 60 min: the first two users' pushes start, the third's turn comes after it.
        assert (sent.users, sent.started, sent.late, sent.done) == (2, 2, 1, False)
        assert sent.last_user_id == users_due[1]
        assert [await _started(temporal_client, u) for u in users_due] == [True, True, False]
    finally:
        await _terminate(temporal_client, users_due)
