"""``HousekeepingWorkflow``: delete what no longer means anything (expired logins, spent authorize codes,
presence rows of dead replicas, stale revocation records, old feed page marks, device registrations of
logins that are over), one idempotent activity per kind, and return how many rows of each kind went;
then start again the resigns that stopped without finishing. Started every hour by the ``housekeeping``
Schedule (``temporal/housekeeping.py``), which skips a run while the previous one is still going."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.housekeeping import HousekeepingActivities
    from temporal.housekeeping import HousekeepingInput, HousekeepingResult

#: ``workflow.patched`` id of the page-mark step (runs recorded before it end after the revocations).
PAGE_MARKS = "housekeeping-feed-page-marks"
#: ``workflow.patched`` id of the dead-device step (runs recorded before it end after the page marks).
DEAD_DEVICES = "housekeeping-dead-devices"
#: ``workflow.patched`` id of the resign-restart step (runs recorded before it end after the devices).
RESIGN_RESTARTS = "housekeeping-resign-restarts"
STEP_TIMEOUT = timedelta(minutes=30)
HEARTBEAT = timedelta(minutes=2)
#: A step that keeps failing gives up after a few tries: the next hourly run starts over anyway.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2), maximum_attempts=5
)


async def _step(activity: Any, req: HousekeepingInput) -> int:
    result: int = await workflow.execute_activity_method(
        activity,
        req,
        start_to_close_timeout=STEP_TIMEOUT,
        heartbeat_timeout=HEARTBEAT,
        retry_policy=STEP_RETRY,
    )
    return result


@workflow.defn
class HousekeepingWorkflow:
    """One run of housekeeping (scheduled ids ``housekeeping-<time>``)."""

    @workflow.run
    async def run(self, req: HousekeepingInput | None = None) -> HousekeepingResult:
        """Delete each kind in turn; the counts per kind. Without input (as the schedules start it: no
        payload for the codec to refuse), the default batch size."""
        req = req or HousekeepingInput()
        result = HousekeepingResult(
            login_sessions=await _step(HousekeepingActivities.delete_expired_logins, req),
            authorize_codes=await _step(HousekeepingActivities.delete_spent_authorize_codes, req),
            dm_presence=await _step(HousekeepingActivities.delete_dead_presence, req),
            revocations=await _step(HousekeepingActivities.delete_stale_revocations, req),
        )
        if workflow.patched(PAGE_MARKS):
            result.feed_page_marks = await _step(HousekeepingActivities.delete_stale_page_marks, req)
        if workflow.patched(DEAD_DEVICES):
            result.device_registrations = await _step(HousekeepingActivities.delete_dead_devices, req)
        if workflow.patched(RESIGN_RESTARTS):
            result.resigns_restarted = await _step(HousekeepingActivities.restart_stopped_resigns, req)
        return result
