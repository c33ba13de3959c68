"""Nudge activities (``DailyReminderWorkflow``, ``MonthlyStoryWorkflow``): the worker's settings for a
run, and one batch: the ids of the users it is for (``storage.nudges``), each sent its push.

A batch starts its users' ``PushDeliveryWorkflow`` runs itself, with the worker's client, under their
business-key ids with duplicates rejected, rather than as child workflows: a child costs the fan-out
run two events and a workflow task of its own per user, which made the fan-out the bottleneck (0.37x
the no-op ceiling); here a batch of a hundred users is one activity in the run's history. Idempotent:
a retry lists the page again, as it is then, and a push started by the failed attempt is found started
(counted as already sent), never started twice.

A batch starts a push only while the batch's deadline (the next quiet start; a reminder's midnight) is
not over: an attempt a worker takes up after it (workers down since the run scheduled it) starts none,
and a batch slowed past it stops there. Its cursor then ends at the last user it handled, so the run,
which stops in quiet hours or past the period and otherwise lists the page again with a new deadline,
never skips anyone."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.deps import ActivityDeps
from storage import nudges
from storage.logins import utcnow
from temporal import search_attributes as sa
from temporal.nudges import (
    KINDS,
    REMINDER,
    BatchSent,
    NudgePlan,
    PushBatch,
    Recipients,
    RecipientsPage,
    plan_of,
)
from temporal.push import PUSH_WORKFLOW, PushRequest, nudge_push

#: Pushes one batch has in flight at once, from its start to its end (or ``PACE_SECONDS``). Nudge pushes
#: share the push task queue with likes and DMs: started all at once, 100,000 reminders would queue every
#: like and DM push of the evening behind them; paced, an interactive push waits behind at most this many.
#: (It costs the fan-out nothing measurable: 0.53x the no-op ceiling either way, 2,000 users, one run each.)
PUSHES_IN_FLIGHT = 32
#: How long a batch waits for one push before moving on (a push retrying a down FCM goes on by itself).
PACE_SECONDS = 30.0
#: The clock a batch measures its own time by (a test replaces it).
_clock = time.monotonic


class NudgeActivities:
    """Activities of the nudge workflows over the worker's database and settings."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="nudge_plan")
    def plan(self, kind: str) -> NudgePlan:
        """Whether ``kind`` is switched on, its batch size and the quiet hours, from the worker's settings."""
        return plan_of(self._deps.settings, kind)

    def recipients(self, page: RecipientsPage) -> Recipients:
        """Up to ``page.limit`` ids of users due for the nudge, ascending, after ``page.after_user_id``."""
        lister = nudges.reminder_recipients if page.kind == REMINDER else nudges.story_recipients
        with self._deps.sessions() as session:
            ids = lister(session, page.period, utcnow(), page.after_user_id, page.limit, page.last_user_id)
        return Recipients(user_ids=ids, done=len(ids) < page.limit)

    @activity.defn(name="nudge_push_batch")
    async def push_batch(self, batch: PushBatch) -> BatchSent:
        """List one page of due users and start each one's push on this worker's task queue, each with
        what is left of the batch's deadline; none once it is over (``late``, the cursor not past them)."""
        page = batch.page
        info = activity.info()
        # Server times: how long after the run scheduled the batch this attempt was taken up.
        waited = (info.started_time - info.scheduled_time).total_seconds()
        began = _clock()

        def deadline_left() -> int:
            return int(batch.deadline_seconds - waited - (_clock() - began))

        if deadline_left() <= 0:
            return BatchSent(users=0, last_user_id=None, done=False, started=0, already_sent=0)
        listed = await asyncio.to_thread(self.recipients, page)
        gate = asyncio.Semaphore(PUSHES_IN_FLIGHT)
        queue = info.task_queue
        over = False

        async def start(user_id: int) -> bool | None:
            nonlocal over
            async with gate:
                left = deadline_left()
                if over or left <= 0:  # the batch's time is over: this user and the next are left
                    over = True
                    return None
                req = nudge_push(page.kind, user_id, page.period, left)
                started = await _start_push(page.kind, req, queue)
                if started:
                    await _pace(req.workflow_id)
                activity.heartbeat()
                return started

        results = await asyncio.gather(*(start(u) for u in listed.user_ids))
        # The users handled before the first one left: the semaphore takes them in order.
        handled = results.index(None) if None in results else len(results)
        return BatchSent(
            users=handled,
            last_user_id=listed.user_ids[handled - 1] if handled else None,
            done=listed.done and handled == len(results),
            started=sum(1 for r in results[:handled] if r),
            already_sent=sum(1 for r in results[:handled] if r is False),
            late=len(results) - handled,
        )


async def _start_push(kind: str, req: PushRequest, task_queue: str) -> bool:
    """Start the push; ``False`` when its id was started before (already sent)."""
    try:
        await activity.client().start_workflow(
            PUSH_WORKFLOW,
            req,
            id=req.workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=sa.about(req.receiver_user_id, KINDS[kind]),
        )
        return True
    except WorkflowAlreadyStartedError:
        return False


async def _pace(workflow_id: str) -> None:
    """Wait until the push ends (however it ends) or ``PACE_SECONDS`` pass."""
    handle = activity.client().get_workflow_handle(workflow_id)
    try:
        await asyncio.wait_for(handle.result(), PACE_SECONDS)
    except (TimeoutError, WorkflowFailureError):
        pass  # still running (retrying) or failed: it is recorded and findable on its own
