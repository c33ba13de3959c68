"""Housekeeping: the input and result of ``HousekeepingWorkflow``, and its Temporal Schedule.

The schedule ``housekeeping`` starts the workflow every hour on the accounts queue (under the deployment's
task-queue prefix), skipping a run while the previous one is still going. It is created, or brought back
to this definition, by the dev stack (``make run``), the test fixtures and the Kubernetes registration Job
(``temporal/k8s/register-job.yaml`` does the same with the ``temporal`` CLI); ``python -m
temporal.housekeeping`` does it against the ``SOSOHAPPY_TEMPORAL_*`` cluster. Its pause state and note are
the operator's (``temporal schedule toggle``) and are left as they are.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from config import Settings
from temporal import search_attributes as sa
from temporal import task_queues
from temporal.schedules import ensure_defined

SCHEDULE_ID = "housekeeping"
#: The scheduled runs' ids are this plus the scheduled time (Temporal appends it).
WORKFLOW_ID = "housekeeping"
WORKFLOW_TYPE = "HousekeepingWorkflow"
KIND = "housekeeping"
INTERVAL = timedelta(hours=1)


class HousekeepingInput(BaseModel):
    """How much one delete statement may remove (the schedule passes no input: the default)."""

    batch_size: int = Field(default=500, ge=1, le=10_000)


class HousekeepingResult(BaseModel):
    """How many rows of each kind one run deleted."""

    login_sessions: int = 0
    authorize_codes: int = 0
    dm_presence: int = 0
    revocations: int = 0
    feed_page_marks: int = 0
    device_registrations: int = 0
    #: Not a deletion: resigns started again (``restart_stopped_resigns``).
    resigns_restarted: int = 0


def schedule(settings: Settings) -> Schedule:
    """The schedule as this code defines it."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            # No input (the default batch size), as the registration Job defines it: a schedule's stored
            # input is a payload, and one the Job's CLI wrote without the codec would be refused.
            args=[],
            id=WORKFLOW_ID,
            task_queue=task_queues.named(task_queues.ACCOUNTS, settings.temporal_task_queue_prefix),
            typed_search_attributes=TypedSearchAttributes([SearchAttributePair(sa.KIND, KIND)]),
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=INTERVAL)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_schedule(client: Client, settings: Settings, *, paused: bool = False) -> bool:
    """Create the schedule, or bring an existing one's action, spec and policy back to :func:`schedule`
    (its pause state and note stay the operator's); ``True`` when it was created. ``paused`` applies only
    to a schedule created now."""
    return await ensure_defined(client, SCHEDULE_ID, schedule(settings), paused=paused)


async def _main() -> None:
    from config.logging import configure_logging
    from config.processes import Process, load_settings
    from temporal.client import connect

    settings = load_settings(Process.SCHEDULES)
    configure_logging(settings)
    created = await ensure_schedule(await connect(settings), settings)
    print(f"schedule {SCHEDULE_ID} {'created' if created else 'up to date'}")


if __name__ == "__main__":
    asyncio.run(_main())
