"""The nudge schedules on the real dev server: the fixtures created both as defined (KST calendar,
``SosoKind``, paused), and a schedule of that definition triggered twice sends each due user exactly
one push (the second run finds every push id started and sends nothing), on the KST day (or month) of
the trigger, with text composed from ids only: no token, e-mail, nickname or text in any history.
The same runs record the replay histories of the nudge workflows (``recording.record_if_asked``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    WorkflowHandle,
)

from activities.deps import ActivityDeps
from activities.push_text import REMINDER_BODY
from config import Settings
from emulators.control import FcmEmulator
from kst.dates import KST
from temporal import nudges
from temporal import search_attributes as sa
from temporal.ids import monthly_push_workflow_id, reminder_push_workflow_id
from temporal.nudges import MONTHLY, REMINDER, NudgeResult, NudgeRun
from temporal.push import PushOutcome
from temporal.schedules import ensure_defined
from tests.fixtures.waiting import wait_until
from tests.workflows.history_scan import find_secrets
from tests.workflows.nudge_helpers import reachable_user, sign_out_everywhere, write_entry
from tests.workflows.recording import record_if_asked

pytestmark = pytest.mark.usefixtures("worker")


async def _started(client: Client, schedule_id: str) -> list[ScheduleActionExecutionStartWorkflow]:
    recent = (await client.get_schedule_handle(schedule_id).describe()).info.recent_actions
    return [a.action for a in recent if isinstance(a.action, ScheduleActionExecutionStartWorkflow)]


async def _trigger(client: Client, schedule_id: str) -> tuple[WorkflowHandle[Any, NudgeResult], datetime]:
    """Trigger the schedule and wait for the run it starts: its handle and scheduled time. A run's id
    is the schedule's plus the trigger time to the second, so first let the clock pass the last run's
    second (a same-second trigger would collide and start nothing)."""
    handle = client.get_schedule_handle(schedule_id)
    recent = (await handle.describe()).info.recent_actions
    if recent:
        next_second = max(a.scheduled_at for a in recent).replace(microsecond=0) + timedelta(seconds=1)
        await asyncio.sleep(max(0.0, (next_second - datetime.now(UTC)).total_seconds()))
    before = {a.workflow_id for a in await _started(client, schedule_id)}
    await handle.trigger()
    deadline = asyncio.get_running_loop().time() + 120
    while not (new := [a for a in await _started(client, schedule_id) if a.workflow_id not in before]):
        assert asyncio.get_running_loop().time() < deadline, "the triggered schedule started no workflow"
        await asyncio.sleep(0.2)
    recent = (await handle.describe()).info.recent_actions
    scheduled = next(
        a.scheduled_at
        for a in recent
        if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
        and a.action.workflow_id == new[0].workflow_id
    )
    run = client.get_workflow_handle(new[0].workflow_id, result_type=NudgeResult)
    return run, scheduled


async def _own_schedule(client: Client, settings: Settings, kind: str, first: int, last: int) -> str:
    """A paused schedule of the fixtures' definition whose runs cover users ``first..last`` only (the
    session database holds other tests' users)."""
    schedule_id = f"{nudges.SCHEDULE_IDS[kind]}-test-{uuid.uuid4().hex[:6]}"
    run = NudgeRun(after_user_id=first - 1, last_user_id=last)
    assert await ensure_defined(client, schedule_id, nudges.schedule(settings, kind, run), paused=True)
    return schedule_id


async def test_the_fixtures_created_both_schedules_as_defined(
    settings: Settings, temporal_client: Client
) -> None:
    for kind, hour, days in ((REMINDER, 21, None), (MONTHLY, 9, 1)):
        schedule_id = nudges.SCHEDULE_IDS[kind]
        before = await temporal_client.get_schedule_handle(schedule_id).describe()
        assert await nudges.ensure_schedules(temporal_client, settings) == {
            nudges.REMINDER_SCHEDULE_ID: False,
            nudges.MONTHLY_SCHEDULE_ID: False,
        }
        after = await temporal_client.get_schedule_handle(schedule_id).describe()
        assert after.schedule == before.schedule and after.schedule.state.paused
        spec = after.schedule.spec
        assert spec.time_zone_name == "Asia/Seoul"
        (calendar,) = spec.calendars
        assert [r.start for r in calendar.hour] == [hour] and [r.start for r in calendar.minute] == [0]
        if days is not None:
            assert [(r.start, r.end) for r in calendar.day_of_month] == [(1, 1)]
        action = after.schedule.action
        assert getattr(action, "workflow", None) == nudges.WORKFLOW_TYPES[kind]
        assert getattr(action, "task_queue", None) == f"{settings.temporal_task_queue_prefix}-push"
        attributes = getattr(action, "typed_search_attributes", None)
        assert attributes is not None and attributes.get(sa.KIND) == (nudges.KINDS[kind])
    ids = [s.id async for s in await temporal_client.list_schedules()]
    assert ids.count(nudges.REMINDER_SCHEDULE_ID) == ids.count(nudges.MONTHLY_SCHEDULE_ID) == 1


async def _push_results(client: Client, ids: list[str]) -> list[PushOutcome]:
    return [await client.get_workflow_handle(i, result_type=PushOutcome).result() for i in ids]


async def _scan(
    client: Client, handles: list[WorkflowHandle[Any, Any]], needles: list[str]
) -> dict[str, list[str]]:
    found = {}
    for handle in handles:
        events = list((await handle.fetch_history()).events)
        assert find_secrets(events, [handle.id]), "the scanner read the events"
        found[handle.id] = find_secrets(events, needles)
    return found


async def test_triggering_the_reminder_twice_sends_each_due_user_one_push(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, temporal_client: Client
) -> None:
    tag = uuid.uuid4().hex[:6]
    due, due_token = await asyncio.to_thread(reachable_user, activity_deps, f"nd{tag}")
    wrote, wrote_token = await asyncio.to_thread(reachable_user, activity_deps)
    gone, gone_token = await asyncio.to_thread(reachable_user, activity_deps)
    await asyncio.to_thread(sign_out_everywhere, activity_deps, gone)
    today = datetime.now(KST)
    write_date = int(today.strftime("%Y%m%d")) * 10**8 + 1200_0000
    await asyncio.to_thread(write_entry, activity_deps, wrote, write_date)
    schedule_id = await _own_schedule(temporal_client, settings, REMINDER, due, gone)

    run, scheduled = await _trigger(temporal_client, schedule_id)
    first = await run.result()
    day = nudges.kst_day(scheduled)
    assert first.period == day and first.stopped == "done"
    assert (first.tally.users, first.tally.started, first.tally.already_sent) == (1, 1, 0)
    (outcome,) = await _push_results(temporal_client, [reminder_push_workflow_id(due, day)])
    assert outcome.label == "sent"
    (message,) = fcm_emulator.messages(due_token)
    assert message["message"]["notification"] == {"title": "소소해피", "body": REMINDER_BODY}
    assert message["message"]["apns"] == {"headers": {"apns-collapse-id": f"reminder-{day}"}}
    assert message["message"]["android"] == {"notification": {"tag": f"reminder-{day}"}}
    assert fcm_emulator.messages(wrote_token) == [] and fcm_emulator.messages(gone_token) == []

    again, _ = await _trigger(temporal_client, schedule_id)
    second = await again.result()
    assert (second.period, second.tally.started, second.tally.already_sent) == (day, 0, 1)
    assert len(fcm_emulator.messages(due_token)) == 1

    push = temporal_client.get_workflow_handle(reminder_push_workflow_id(due, day))
    needles = [due_token, f"n{tag}", f"nd{tag}", REMINDER_BODY, "오늘의 비밀 일기"]
    assert await _scan(temporal_client, [run, again, push], needles) == {
        h: [] for h in (run.id, again.id, push.id)
    }
    await record_if_asked(run, "daily_reminder_scheduled")
    await record_if_asked(again, "daily_reminder_already_sent")


async def test_triggering_the_monthly_story_twice_sends_each_writer_their_story_once(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, temporal_client: Client
) -> None:
    now = datetime.now(KST)
    last_month = nudges.story_month(now)
    base = last_month * 100  # yyyymm00
    writer, writer_token = await asyncio.to_thread(reachable_user, activity_deps)
    silent, silent_token = await asyncio.to_thread(reachable_user, activity_deps)
    for day, happiness, categories in ((2, 5, ("coffee", "books")), (3, 4, ("coffee",)), (28, 2, ("sleep",))):
        date = (base + day) * 10**8 + 2000_0000
        await asyncio.to_thread(write_entry, activity_deps, writer, date, happiness, categories)
    this_month = (now.year * 100 + now.month) * 100 + 1
    await asyncio.to_thread(write_entry, activity_deps, silent, this_month * 10**8, 5, ("trip",))
    schedule_id = await _own_schedule(temporal_client, settings, MONTHLY, writer, silent)

    run, scheduled = await _trigger(temporal_client, schedule_id)
    first = await run.result()
    month = nudges.story_month(scheduled)
    assert (first.period, first.stopped, first.tally.started) == (month, "done", 1)
    (outcome,) = await _push_results(temporal_client, [monthly_push_workflow_id(writer, month)])
    assert outcome.label == "sent"
    (message,) = fcm_emulator.messages(writer_token)
    body = f"{month % 100}월에 3일 기록했어요. 평균 행복 3.7, 가장 행복했던 순간은 커피 🌷"
    assert message["message"]["notification"] == {"title": "소소해피", "body": body}
    assert message["message"]["data"] == {"kind": "monthly", "month": str(month)}
    assert message["message"]["apns"] == {"headers": {"apns-collapse-id": f"monthly-{month}"}}
    assert fcm_emulator.messages(silent_token) == []

    again, _ = await _trigger(temporal_client, schedule_id)
    second = await again.result()
    assert (second.tally.started, second.tally.already_sent) == (0, 1)
    wait_until(
        lambda: len(fcm_emulator.attempts(writer_token)) == 1,
        "1 push(es) at the FCM emulator",
        deadline_seconds=60,
    )
    assert len(fcm_emulator.messages(writer_token)) == 1

    push = temporal_client.get_workflow_handle(monthly_push_workflow_id(writer, month))
    assert await _scan(temporal_client, [run, push], [writer_token, body, "오늘의 비밀 일기"]) == {
        run.id: [],
        push.id: [],
    }
    await record_if_asked(run, "monthly_story_scheduled")


async def test_a_backfill_addresses_the_day_it_was_meant_for_and_sends_nothing_for_a_past_day(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, temporal_client: Client
) -> None:
    user, token = await asyncio.to_thread(reachable_user, activity_deps)
    schedule_id = await _own_schedule(temporal_client, settings, REMINDER, user, user)
    yesterday = datetime.now(KST).replace(hour=21, minute=0, second=0, microsecond=0) - timedelta(days=1)
    handle = temporal_client.get_schedule_handle(schedule_id)
    await handle.backfill(
        ScheduleBackfill(
            start_at=yesterday - timedelta(minutes=1),
            end_at=yesterday + timedelta(minutes=1),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )
    deadline = asyncio.get_running_loop().time() + 120
    while not (started := await _started(temporal_client, schedule_id)):
        assert asyncio.get_running_loop().time() < deadline, "the backfill started no workflow"
        await asyncio.sleep(0.2)
    (action,) = started
    result = await temporal_client.get_workflow_handle(action.workflow_id, result_type=NudgeResult).result()
    # The day of the backfilled 21:00 KST, not of the clock: yesterday, past, so nobody is reminded of it.
    assert (result.period, result.stopped) == (nudges.kst_day(yesterday), "past")
    assert result.tally.users == 0 and fcm_emulator.messages(token) == []
