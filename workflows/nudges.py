"""``DailyReminderWorkflow`` and ``MonthlyStoryWorkflow``: one nudge to every user it is due for, once.

A run resolves the period it addresses (the day, or the month before) from the time its schedule meant
it for (``TemporalScheduledStartTime``), or from its input, never from a clock; then, batch by batch, it
lists due users by id and starts one ``PushDeliveryWorkflow`` per user (one activity per batch,
``activities.nudges``) under the push's business-key id (``push:reminder:<user>:<yyyymmdd>``,
``push:monthly:<user>:<yyyymm>``), rejecting duplicates: a push already started, by an earlier run or an
overlapping one, is counted as already sent and not sent again. Pushes run on their own (their retries
never hold up the fan-out); they are found by id or by ``SosoKind``/``SosoUserId``, not as children.
After ``batches_per_run`` batches a run continues as new with its cursor and tally, so a history holds a
few batches whatever the number of users. Quiet hours (the worker's settings, read at the start of each
run): a reminder run stops; a story run waits for their end, unless its window is over by then (it ends
``past`` at once). A reminder is sent only on its own KST day, a story in the first days of the following
month (``temporal.nudges.still_due``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.nudges import NudgeActivities
    from temporal import nudges
    from temporal.nudges import NudgeResult, NudgeRun, PushBatch, RecipientsPage

STEP_TIMEOUT = timedelta(minutes=2)
#: A batch waits for its pushes (``activities.nudges.PUSHES_IN_FLIGHT``) and heartbeats after each.
BATCH_TIMEOUT, BATCH_HEARTBEAT = timedelta(minutes=15), timedelta(minutes=2)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))

#: A story run in quiet hours checks its window at their end before waiting for it: when the window is
#: over by then (after the 7th), the run ends ``past`` at once instead of holding a timer until 08:00 KST
#: to find that out. Histories without the marker waited, then checked.
PAST_BEFORE_QUIET_WAIT = "nudges-past-before-quiet-wait"


def _scheduled_period(kind: str, run: NudgeRun) -> int:
    """The input's period, else the one of the schedule's time, else of the run's start (by hand)."""
    if run.period is not None:
        return run.period
    scheduled = workflow.info().typed_search_attributes.get(nudges.SCHEDULED_START_TIME)
    return nudges.period_of(kind, scheduled if scheduled is not None else workflow.now())


async def fan_out(kind: nudges.NudgeKind, run: NudgeRun) -> NudgeResult:
    """One run of ``kind``: batches of due users, one push each, until done, quiet or past."""
    period = _scheduled_period(kind, run)
    tally = run.tally.model_copy()
    plan = await workflow.execute_activity_method(
        NudgeActivities.plan, kind, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
    )
    if not plan.enabled:
        return NudgeResult(period=period, stopped="disabled", tally=tally)
    after, batches = run.after_user_id, 0
    while True:
        quiet = nudges.quiet_remaining(workflow.now(), plan)
        if quiet is not None:
            if kind == nudges.REMINDER:
                return NudgeResult(period=period, stopped="quiet", tally=tally)
            if workflow.patched(PAST_BEFORE_QUIET_WAIT) and not nudges.still_due(
                kind, period, workflow.now() + quiet, plan
            ):
                return NudgeResult(period=period, stopped="past", tally=tally)
            await workflow.sleep(quiet)
        if not nudges.still_due(kind, period, workflow.now(), plan):
            return NudgeResult(period=period, stopped="past", tally=tally)
        sent = await workflow.execute_activity_method(
            NudgeActivities.push_batch,
            PushBatch(
                page=RecipientsPage(
                    kind=kind,
                    period=period,
                    after_user_id=after,
                    last_user_id=run.last_user_id,
                    limit=plan.batch_size,
                ),
                deadline_seconds=nudges.push_deadline_seconds(kind, workflow.now(), plan),
            ),
            start_to_close_timeout=BATCH_TIMEOUT,
            heartbeat_timeout=BATCH_HEARTBEAT,
            retry_policy=STEP_RETRY,
        )
        tally.users += sent.users
        tally.started += sent.started
        tally.already_sent += sent.already_sent
        tally.late += sent.late
        tally.batches += 1
        batches += 1
        if sent.last_user_id is not None:
            after = sent.last_user_id
        if sent.done:
            return NudgeResult(period=period, stopped="done", tally=tally)
        if batches >= run.batches_per_run or workflow.info().is_continue_as_new_suggested():
            tally.runs += 1
            workflow.continue_as_new(
                run.model_copy(update={"period": period, "after_user_id": after, "tally": tally})
            )


@workflow.defn
class DailyReminderWorkflow:
    """The evening reminder of one KST day (schedule ``nudge-reminder``)."""

    @workflow.run
    async def run(self, run: NudgeRun | None = None) -> NudgeResult:
        """Remind every reachable user without an entry of the day, once; the tally. Without input (as
        the schedule starts it), the whole run of the scheduled day."""
        return await fan_out(nudges.REMINDER, run or NudgeRun())


@workflow.defn
class MonthlyStoryWorkflow:
    """The happiness story of one KST month (schedule ``nudge-monthly``)."""

    @workflow.run
    async def run(self, run: NudgeRun | None = None) -> NudgeResult:
        """Send every reachable user with entries in the month its story, once; the tally. Without input
        (as the schedule starts it), the whole run of the month before."""
        return await fan_out(nudges.MONTHLY, run or NudgeRun())
