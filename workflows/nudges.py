"""``DailyReminderWorkflow`` and ``MonthlyStoryWorkflow``: one nudge to every user it is due for, once.

A run resolves the period it addresses (the day, or the month before) from the time its schedule meant
it for (``TemporalScheduledStartTime``), or from its input, never from a clock; then, batch by batch, it
lists due users by id (an activity) and starts one ``PushDeliveryWorkflow`` per user as a child under the
push's business-key id (``push:reminder:<user>:<yyyymmdd>``, ``push:monthly:<user>:<yyyymm>``), rejecting
duplicates: a push already started, by an earlier run or an overlapping one, is counted as already sent
and not sent again. Pushes are abandoned to run on their own (their retries never hold up the fan-out).
After ``batches_per_run`` batches a run continues as new with its cursor and tally, so a history holds a
few batches whatever the number of users. Quiet hours (the worker's settings, read at the start of each
run): a reminder run stops; a story run waits for their end. A reminder is sent only on its own KST day,
a story in the first days of the following month (``temporal.nudges.still_due``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.nudges import NudgeActivities
    from temporal import nudges
    from temporal import search_attributes as sa
    from temporal.nudges import NudgeResult, NudgeRun, RecipientsPage
    from temporal.push import PushRequest, monthly_push, reminder_push
    from workflows.push import PushDeliveryWorkflow

STEP_TIMEOUT = timedelta(minutes=2)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


async def _start_push(kind: str, req: PushRequest) -> bool:
    """Start the push as an abandoned child; ``False`` when its id was started before (already sent)."""
    try:
        await workflow.start_child_workflow(
            PushDeliveryWorkflow.run,
            req,
            id=req.workflow_id,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.USER_ID, str(req.receiver_user_id)),
                    SearchAttributePair(sa.KIND, nudges.KINDS[kind]),
                ]
            ),
        )
        return True
    except WorkflowAlreadyStartedError:
        return False


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
    make = reminder_push if kind == nudges.REMINDER else monthly_push
    while True:
        quiet = nudges.quiet_remaining(workflow.now(), plan)
        if quiet is not None:
            if kind == nudges.REMINDER:
                return NudgeResult(period=period, stopped="quiet", tally=tally)
            await workflow.sleep(quiet)
        if not nudges.still_due(kind, period, workflow.now(), plan):
            return NudgeResult(period=period, stopped="past", tally=tally)
        page = await workflow.execute_activity_method(
            NudgeActivities.recipients,
            RecipientsPage(
                kind=kind,
                period=period,
                after_user_id=after,
                last_user_id=run.last_user_id,
                limit=plan.batch_size,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        deadline = nudges.push_deadline_seconds(kind, workflow.now(), plan)
        started = await asyncio.gather(*(_start_push(kind, make(u, period, deadline)) for u in page.user_ids))
        tally.users += len(page.user_ids)
        tally.started += sum(started)
        tally.already_sent += len(started) - sum(started)
        tally.batches += 1
        batches += 1
        if page.user_ids:
            after = page.user_ids[-1]
        if page.done:
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
    async def run(self, run: NudgeRun) -> NudgeResult:
        """Remind every reachable user without an entry of the day, once; the tally."""
        return await fan_out(nudges.REMINDER, run)


@workflow.defn
class MonthlyStoryWorkflow:
    """The happiness story of one KST month (schedule ``nudge-monthly``)."""

    @workflow.run
    async def run(self, run: NudgeRun) -> NudgeResult:
        """Send every reachable user with entries in the month its story, once; the tally."""
        return await fan_out(nudges.MONTHLY, run)
