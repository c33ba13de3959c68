"""Gentle nudges: the evening reminder and the monthly happiness story, each a Temporal Schedule.

- Schedule ``nudge-reminder`` starts ``DailyReminderWorkflow`` every evening at ``nudge_reminder_time``
  (KST): every user with a device and a live login who has not written the day's entry gets one push,
  ``push:reminder:<user>:<yyyymmdd>``.
- Schedule ``nudge-monthly`` starts ``MonthlyStoryWorkflow`` on the 1st of each month at
  ``nudge_monthly_time`` (KST): every such user with entries in the month before gets its story,
  ``push:monthly:<user>:<yyyymm>``.

The day (or month) a run addresses comes from the time the schedule meant it for (the
``TemporalScheduledStartTime`` search attribute a schedule sets on what it starts: a trigger's is the
trigger's time, a backfill's the backfilled time), never from the worker's clock; a run started by hand
may name it (``{"period": 20261224}``). Runs list users by id in bounded batches, start one push workflow
per user under its business-key id (a push already started is counted as already sent, so a re-run or an
overlap never sends twice) and continue as new after a few batches, so no history grows with the number
of users. The rules below are pure functions of moments: workflows import them and pass their
``workflow.now()``.

Both schedules are created, or brought back to this definition, by the dev stack (``make run``), the test
fixtures and the Kubernetes registration Job (``temporal/k8s/register-job.yaml``, with the ``temporal``
CLI); ``python -m temporal.nudges`` does it against the ``SOSOHAPPY_TEMPORAL_*`` cluster.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from config import Settings
from kst.dates import KST
from temporal import search_attributes as sa
from temporal import task_queues
from temporal.schedules import ensure_defined

NudgeKind = Literal["reminder", "monthly"]
REMINDER: NudgeKind = "reminder"
MONTHLY: NudgeKind = "monthly"

REMINDER_SCHEDULE_ID = "nudge-reminder"
MONTHLY_SCHEDULE_ID = "nudge-monthly"
SCHEDULE_IDS: dict[str, str] = {REMINDER: REMINDER_SCHEDULE_ID, MONTHLY: MONTHLY_SCHEDULE_ID}
WORKFLOW_TYPES: dict[str, str] = {REMINDER: "DailyReminderWorkflow", MONTHLY: "MonthlyStoryWorkflow"}
#: ``SosoKind`` of the scheduled runs and of the pushes they start.
KINDS: dict[str, str] = {REMINDER: "push-reminder", MONTHLY: "push-monthly"}
#: A run the scheduler missed (server or workers down) is still started this long after its time.
CATCHUP: dict[str, timedelta] = {REMINDER: timedelta(hours=1), MONTHLY: timedelta(days=1)}
#: The longest a nudge's push keeps retrying (it also stops at the next quiet start).
MAX_DEADLINE = timedelta(hours=12)
MIN_DEADLINE = timedelta(minutes=1)
#: Set by Temporal on every workflow a schedule starts: the time the action was meant for.
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


class NudgeTally(BaseModel):
    """What the runs of one nudge have done so far (carried across continue-as-new)."""

    #: Users listed as due.
    users: int = 0
    #: Push workflows started by these runs.
    started: int = 0
    #: Users whose push of this period had been started before (a re-run, an overlap): not sent again.
    already_sent: int = 0
    #: Users listed once the batch's deadline was over (workers down or slow): not sent then, left for
    #: a later batch of the run while the nudge is still due and not quiet.
    late: int = 0
    batches: int = 0
    runs: int = 1


class NudgeRun(BaseModel):
    """Input of a nudge run; the schedules pass none (the default)."""

    #: ``yyyymmdd`` (reminder) or ``yyyymm`` (story); unset: from the scheduled time.
    period: int | None = None
    #: Keyset cursor: only users with a larger id (an operator may start part of the users).
    after_user_id: int = Field(default=0, ge=0)
    #: Only users up to this id (unset: all).
    last_user_id: int | None = None
    #: Batches one run handles before it continues as new.
    batches_per_run: int = Field(default=10, ge=1, le=100)
    tally: NudgeTally = NudgeTally()


class NudgeResult(BaseModel):
    """How a nudge's runs ended: ``done`` (every user listed), ``disabled`` (setting off), ``quiet``
    (a reminder in quiet hours), ``past`` (the period is no longer current)."""

    period: int
    stopped: Literal["done", "disabled", "quiet", "past"]
    tally: NudgeTally


class NudgePlan(BaseModel):
    """The worker's settings for one nudge, read by an activity at the start of each run."""

    enabled: bool
    batch_size: int
    quiet_start_minute: int
    quiet_end_minute: int
    #: A story is sent only during this many first days of the following month.
    monthly_window_days: int = 7


class RecipientsPage(BaseModel):
    """One batch to list: users due for ``kind`` of ``period`` with ``after_user_id < id <= last``."""

    kind: NudgeKind
    period: int
    after_user_id: int
    last_user_id: int | None = None
    limit: int


class Recipients(BaseModel):
    """The ids of one batch, ascending; ``done`` when it is the last."""

    user_ids: list[int]
    done: bool


class PushBatch(BaseModel):
    """One batch to send: the users ``page`` lists, each pushed under its business-key id with this
    deadline (seconds the push may keep retrying)."""

    page: RecipientsPage
    deadline_seconds: int


class BatchSent(BaseModel):
    """What one batch did: how many users it listed, the last one's id (the next batch's cursor),
    whether it was the last batch, and how many pushes it started or found started before."""

    users: int
    last_user_id: int | None
    done: bool
    started: int
    already_sent: int
    #: Users listed but left because the batch's deadline was over (the cursor stops before them).
    late: int = 0


def plan_of(settings: Settings, kind: str) -> NudgePlan:
    """The plan of ``kind`` under ``settings``."""
    enabled = settings.nudge_reminder_enabled if kind == REMINDER else settings.nudge_monthly_enabled
    return NudgePlan(
        enabled=enabled,
        batch_size=settings.nudge_batch_size,
        quiet_start_minute=_minute(settings.nudge_quiet_start),
        quiet_end_minute=_minute(settings.nudge_quiet_end),
        monthly_window_days=settings.nudge_monthly_window_days,
    )


def _minute(value: time) -> int:
    return value.hour * 60 + value.minute


def kst_day(moment: datetime) -> int:
    """``yyyymmdd`` of ``moment`` in KST."""
    local = moment.astimezone(KST)
    return local.year * 10_000 + local.month * 100 + local.day


def story_month(moment: datetime) -> int:
    """``yyyymm`` of the KST month before the one of ``moment``."""
    local = moment.astimezone(KST)
    return local.year * 100 + local.month - 1 if local.month > 1 else (local.year - 1) * 100 + 12


def period_of(kind: str, scheduled: datetime) -> int:
    """The day (reminder) or month (story) a run meant for ``scheduled`` addresses."""
    return kst_day(scheduled) if kind == REMINDER else story_month(scheduled)


def quiet_remaining(moment: datetime, plan: NudgePlan) -> timedelta | None:
    """How long the quiet hours ``moment`` falls in still last; ``None`` outside them."""
    start, end = plan.quiet_start_minute, plan.quiet_end_minute
    if start == end:
        return None
    local = moment.astimezone(KST)
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    until = midnight + timedelta(minutes=end)
    if until <= local:
        until += timedelta(days=1)
    return until - local


def still_due(kind: str, period: int, moment: datetime, plan: NudgePlan) -> bool:
    """A reminder is due only on its own KST day; a story during the first ``monthly_window_days`` days
    of the month after."""
    if kind == REMINDER:
        return kst_day(moment) == period
    local = moment.astimezone(KST)
    following = period + 1 if period % 100 < 12 else (period // 100 + 1) * 100 + 1
    return local.year * 100 + local.month == following and local.day <= plan.monthly_window_days


def push_deadline_seconds(kind: str, moment: datetime, plan: NudgePlan) -> int:
    """How long a nudge's push started at ``moment`` may keep retrying: until the next quiet start (and,
    for a reminder, the end of its day), at most ``MAX_DEADLINE``, at least ``MIN_DEADLINE``."""
    local = moment.astimezone(KST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    ends = [local + MAX_DEADLINE]
    if plan.quiet_start_minute != plan.quiet_end_minute:
        quiet = midnight + timedelta(minutes=plan.quiet_start_minute)
        ends.append(quiet if quiet > local else quiet + timedelta(days=1))
    if kind == REMINDER:
        ends.append(midnight + timedelta(days=1))
    return int(max(MIN_DEADLINE, min(ends) - local).total_seconds())


def schedule(settings: Settings, kind: str, run: NudgeRun | None = None) -> Schedule:
    """The schedule of ``kind`` as this code defines it (``run``: another input, for tests)."""
    at = settings.nudge_reminder_time if kind == REMINDER else settings.nudge_monthly_time
    calendar = ScheduleCalendarSpec(
        second=[ScheduleRange(0)],
        minute=[ScheduleRange(at.minute)],
        hour=[ScheduleRange(at.hour)],
        # Every day for the reminder (the spec's default), the 1st for the story.
        day_of_month=[ScheduleRange(1, 31)] if kind == REMINDER else [ScheduleRange(1)],
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPES[kind],
            # No input unless a test gives one, as the registration Job defines it (the default run).
            args=[run] if run is not None else [],
            id=SCHEDULE_IDS[kind],
            task_queue=task_queues.named(task_queues.PUSH, settings.temporal_task_queue_prefix),
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, KINDS[kind])]),
        ),
        spec=ScheduleSpec(calendars=[calendar], time_zone_name=str(KST)),
        # Overlapping runs are harmless (a push id is started once): none is dropped for another.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=CATCHUP[kind]),
    )


async def ensure_schedules(client: Client, settings: Settings, *, paused: bool = False) -> dict[str, bool]:
    """Create both schedules, or bring them back to :func:`schedule` (pause state and note stay the
    operator's); per schedule id, ``True`` when it was created now."""
    return {
        SCHEDULE_IDS[kind]: await ensure_defined(
            client, SCHEDULE_IDS[kind], schedule(settings, kind), paused=paused
        )
        for kind in (REMINDER, MONTHLY)
    }


async def _main() -> None:
    from config.logging import configure_logging
    from config.processes import Process, load_settings
    from temporal.client import connect

    settings = load_settings(Process.SCHEDULES)
    configure_logging(settings)
    for schedule_id, created in (await ensure_schedules(await connect(settings), settings)).items():
        print(f"schedule {schedule_id} {'created' if created else 'up to date'}")


if __name__ == "__main__":
    asyncio.run(_main())
