"""Who gets which nudge, exactly once, on the right KST day, with days and a month passing in seconds on
the time-skipping test server (real activities against the test database and the FCM emulator, the
worker's default quiet hours 23:00-08:00 KST, batches of two users, two batches a run).

The month is the one ending on the first KST month end after tomorrow: the reminder of its last day, the
story of the whole month the next morning (started at 07:30 KST, 22:30 UTC of the day before, in the
quiet hours: it waits for 08:00), the reminder of the 1st, and runs that change nothing (again, in the
quiet hours, a week late).

Each step runs on a fresh time-skipping server whose first act is to skip to the step's moment (the
database and the FCM emulator carry over). Within a step the clock moves only when the test says so
(automatic skipping is off): with it on, a server left idle for an instant while the test awaits a
result skips to its furthest timer (the ten-year default run timeout; seen on a loaded CI run as a
second reminder run dated 2036). The story's wait for the end of the quiet hours is skipped by hand
once its timer is in the history."""

from __future__ import annotations

import calendar
import dataclasses
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.nudges import NudgeActivities
from activities.push import PushActivities
from activities.push_text import REMINDER_BODY
from config import Settings
from emulators.control import FcmEmulator
from kst.dates import KST, from_moment
from temporal.ids import monthly_push_workflow_id, reminder_push_workflow_id
from temporal.nudges import NudgeResult, NudgeRun, kst_day
from temporal.push import PushOutcome
from tests.fixtures.waiting import eventually
from tests.workflows.nudge_helpers import reachable_user, sign_out_everywhere, write_entry
from tests.workflows.recording import record_if_asked
from tests.workflows.time_skipping import time_skipping_env
from workflows.nudges import DailyReminderWorkflow, MonthlyStoryWorkflow
from workflows.push import PushDeliveryWorkflow


def _last_evening_of_month(moment: datetime) -> datetime:
    """21:00 KST on the last day of the month of ``moment``."""
    last = calendar.monthrange(moment.year, moment.month)[1]
    return moment.replace(day=last, hour=21, minute=0, second=0, microsecond=0)


async def _start(client: Client, queue: str, workflow: str, run: NudgeRun) -> tuple[Any, Any]:
    """A nudge run started now: its handle, and the handle of its first run (before continue-as-new)."""
    handle = await client.start_workflow(
        workflow,
        run,
        id=f"nudge-run-{uuid.uuid4().hex[:8]}",
        task_queue=queue,
        result_type=NudgeResult,
    )
    return handle, client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)


async def _run(client: Client, queue: str, workflow: str, run: NudgeRun) -> NudgeResult:
    """The result of a nudge run started now."""
    handle, _ = await _start(client, queue, workflow, run)
    result: NudgeResult = await handle.result()
    return result


async def _timer_started(run: Any) -> bool:
    history = await run.fetch_history()
    return EventType.EVENT_TYPE_TIMER_STARTED in {e.event_type for e in history.events}


async def _delivered(client: Client, ids: list[str]) -> None:
    for push_id in ids:
        outcome = await client.get_workflow_handle(push_id, result_type=PushOutcome).result()
        assert outcome.label == "sent", push_id


def _bodies(fcm: FcmEmulator, token: str) -> list[str]:
    return [m["message"]["notification"]["body"] for m in fcm.messages(token)]


class Steps:
    """Fresh time-skipping servers, each with a worker of the nudge workflows, the push workflow and
    their real activities over ``deps``."""

    def __init__(self, deps: ActivityDeps) -> None:
        self.nudge, self.push = NudgeActivities(deps), PushActivities(deps)

    async def now(self) -> datetime:
        async with time_skipping_env() as env:
            return await env.get_current_time()

    @asynccontextmanager
    async def at(self, moment: datetime) -> AsyncIterator[tuple[Client, str, WorkflowEnvironment]]:
        """A server whose clock was skipped to ``moment`` and then moves only by ``env.sleep``: its
        client, the worker's task queue and the environment."""
        queue = f"nudges-{uuid.uuid4()}"
        async with time_skipping_env() as env:
            now = await env.get_current_time()
            assert moment > now, (moment, now)
            await env.sleep(moment - now)
            with env.auto_time_skipping_disabled(), ThreadPoolExecutor(8) as executor:
                async with Worker(
                    env.client,
                    task_queue=queue,
                    workflows=[DailyReminderWorkflow, MonthlyStoryWorkflow, PushDeliveryWorkflow],
                    activity_executor=executor,
                    activities=[
                        self.nudge.plan,
                        self.nudge.push_batch,
                        self.push.device_ids,
                        self.push.send_to_device,
                        self.push.remove_device,
                        self.push.record_push_failure,
                    ],
                ):
                    yield env.client, queue, env


def _moment(at: datetime, hour: int, minute: int = 0, second: int = 0, hundredths: int = 0) -> int:
    return from_moment(at.replace(hour=hour, minute=minute, second=second, microsecond=hundredths * 10_000))


async def test_a_month_end_of_reminders_and_the_monthly_story(
    settings: Settings, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    # The worker's defaults for quiet hours and the story's window (the session's settings turn them off).
    defaults = Settings(env="test")
    worker_settings = settings.model_copy(
        update={
            "nudge_batch_size": 2,
            "nudge_quiet_start": defaults.nudge_quiet_start,
            "nudge_quiet_end": defaults.nudge_quiet_end,
            "nudge_monthly_window_days": defaults.nudge_monthly_window_days,
        }
    )
    steps = Steps(dataclasses.replace(activity_deps, settings=worker_settings))
    names = ("due", "late", "early", "out", "night", "month")
    made = {name: reachable_user(activity_deps) for name in names}
    ids = {name: user for name, (user, _) in made.items()}
    tokens = {name: token for name, (_, token) in made.items()}
    sign_out_everywhere(activity_deps, ids["out"])
    # Two batches of two a run: six users take two runs (continue-as-new).
    scope = NudgeRun(after_user_id=min(ids.values()) - 1, last_user_id=max(ids.values()), batches_per_run=2)

    tomorrow = (await steps.now()).astimezone(KST) + timedelta(days=1)
    month_end = _last_evening_of_month(tomorrow)
    if month_end <= tomorrow:  # tomorrow is a month's last day, already past 21:00: the next month's
        month_end = _last_evening_of_month(month_end + timedelta(days=2))
    first = month_end + timedelta(days=1)  # the 1st of the next month, 21:00
    day, next_day, month = kst_day(month_end), kst_day(first), kst_day(month_end) // 100
    # Written the day before at 23:59:59.99 KST (counts for that day only), and at the day's first moment.
    write_entry(
        activity_deps, ids["late"], _moment(month_end - timedelta(days=1), 23, 59, 59, 99), 4, ("coffee",)
    )
    write_entry(activity_deps, ids["early"], _moment(month_end, 0), 2, ("sleep",))

    # The evening of the month's last day: everyone reachable who has not written that day; twice.
    reminded = ["due", "late", "night", "month"]
    async with steps.at(month_end) as (client, queue, env):
        result = await _run(client, queue, "DailyReminderWorkflow", scope)
        assert (result.period, result.stopped) == (day, "done")
        assert (result.tally.users, result.tally.started, result.tally.already_sent) == (4, 4, 0)
        assert result.tally.runs == 2
        await _delivered(client, [reminder_push_workflow_id(ids[n], day) for n in reminded])
        again = await _run(client, queue, "DailyReminderWorkflow", scope)
        assert (again.period, again.tally.started, again.tally.already_sent) == (day, 0, 4)

    # Two of them write at 23:59 KST; one also just after midnight (the next month).
    write_entry(activity_deps, ids["night"], _moment(month_end, 23, 59), 5, ("trip", "coffee"))
    write_entry(activity_deps, ids["month"], _moment(month_end, 23, 59, 59, 99), 3, ("music",))
    write_entry(activity_deps, ids["month"], _moment(first, 0, 0, 10), 1, ("home",))

    # The 1st at 07:30 KST (still the month's last day in UTC), in the quiet hours: the story of the
    # month waits for 08:00, then goes to everyone who wrote in it.
    storied = ["late", "early", "night", "month"]
    async with steps.at(first.replace(hour=7, minute=30)) as (client, queue, env):
        handle, first_run = await _start(client, queue, "MonthlyStoryWorkflow", scope)
        await eventually(lambda: _timer_started(first_run), "the story waiting for the quiet hours' end")
        await env.sleep(timedelta(minutes=30))
        story = await handle.result()
        assert (story.period, story.stopped, story.tally.started) == (month, "done", 4)
        await _delivered(client, [monthly_push_workflow_id(ids[n], month) for n in storied])

    # The evening of the 1st: a new day, new pushes.
    reminded_1st = ["due", "late", "early", "night"]
    async with steps.at(first) as (client, queue, env):
        result = await _run(client, queue, "DailyReminderWorkflow", scope)
        assert (result.period, result.tally.started, result.tally.already_sent) == (next_day, 4, 0)
        await _delivered(client, [reminder_push_workflow_id(ids[n], next_day) for n in reminded_1st])

    # 23:30 KST: quiet hours, a reminder run sends nothing; a week later, the story is past.
    async with steps.at(first.replace(hour=23, minute=30)) as (client, queue, env):
        quiet = await _run(client, queue, "DailyReminderWorkflow", scope)
        assert (quiet.period, quiet.stopped, quiet.tally.users) == (next_day, "quiet", 0)
    async with steps.at(first.replace(hour=12) + timedelta(days=7)) as (client, queue, env):
        late = await _run(client, queue, "MonthlyStoryWorkflow", scope.model_copy(update={"period": month}))
        assert (late.stopped, late.tally.users) == ("past", 0)

    story_of = {
        "late": f"{month % 100}월에 1일 기록했어요. 평균 행복 4.0, 가장 행복했던 순간은 커피 🌷",
        "early": f"{month % 100}월에 1일 기록했어요. 평균 행복 2.0, 가장 행복했던 순간은 잠 🌷",
        "night": f"{month % 100}월에 1일 기록했어요. 평균 행복 5.0, 가장 행복했던 순간은 커피 🌷",  # tie: by name
        "month": f"{month % 100}월에 1일 기록했어요. 평균 행복 3.0, 가장 행복했던 순간은 음악 🌷",
    }
    expected = {
        name: [REMINDER_BODY] * (name in reminded)
        + [story_of.get(name, "")] * (name in storied)
        + [REMINDER_BODY] * (name in reminded_1st)
        for name in names
    }
    assert {name: _bodies(fcm_emulator, tokens[name]) for name in names} == expected


async def _closed(run: Any) -> bool:
    return bool((await run.describe()).status != WorkflowExecutionStatus.RUNNING)


@pytest.mark.parametrize(("day", "hour", "minute"), [(7, 23, 30), (8, 1, 0)], ids=["7th-2330", "8th-0100"])
async def test_a_story_run_in_quiet_hours_whose_window_is_over_by_their_end_ends_past_at_once(
    settings: Settings,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    day: int,
    hour: int,
    minute: int,
) -> None:
    # A trigger of ``nudge-monthly`` in the quiet hours (23:00-08:00 KST) after the story's window (the
    # first 7 days): at 08:00 it would be the 8th, so the run ends "past" before any timer, the
    # time-skipping clock still where it started (it moves only when the test sleeps).
    defaults = Settings(env="test")
    worker_settings = settings.model_copy(
        update={
            "nudge_quiet_start": defaults.nudge_quiet_start,
            "nudge_quiet_end": defaults.nudge_quiet_end,
            "nudge_monthly_window_days": defaults.nudge_monthly_window_days,
        }
    )
    steps = Steps(dataclasses.replace(activity_deps, settings=worker_settings))
    user, token = reachable_user(activity_deps)
    now = (await steps.now()).astimezone(KST)
    next_first = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0)
    moment = next_first.replace(day=day, hour=hour, minute=minute, microsecond=0)
    month = kst_day(now) // 100  # the month before the trigger's: its story
    write_entry(activity_deps, user, _moment(now, 12), 5, ("coffee",))  # a writer of that month
    # No period: as a trigger, the month comes from the run's own time.
    scope = NudgeRun(after_user_id=user - 1, last_user_id=user)
    async with steps.at(moment) as (client, queue, env):
        started = await env.get_current_time()
        handle, first_run = await _start(client, queue, "MonthlyStoryWorkflow", scope)
        await eventually(lambda: _closed(first_run), "the story run ending without a wait")
        result = await handle.result()
        assert (result.period, result.stopped) == (month, "past")
        assert (result.tally.users, result.tally.started, result.tally.runs) == (0, 0, 1)
        events = {e.event_type for e in (await first_run.fetch_history()).events}
        assert EventType.EVENT_TYPE_TIMER_STARTED not in events
        assert EventType.EVENT_TYPE_MARKER_RECORDED in events  # the patch's: new runs take this path
        quiet_end = moment.replace(hour=8, minute=0) + timedelta(days=1 if hour >= 8 else 0)
        assert started <= await env.get_current_time() < quiet_end
        if day == 7:
            await record_if_asked(first_run, "monthly_story_past_in_quiet_hours")
    assert fcm_emulator.messages(token) == []
