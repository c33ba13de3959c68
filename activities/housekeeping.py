"""Housekeeping steps (``HousekeepingWorkflow``): each deletes one kind of row that no longer means anything,
in bounded batches (``storage.housekeeping``), and returns how many it deleted. Idempotent: a repeat finds
only what became stale since. Each computes its cutoff from the worker's clock and settings when it runs.
One more starts the resigns that stopped without finishing again (``restart_stopped_resigns``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity
from temporalio.common import WorkflowIDReusePolicy

from activities.deps import ActivityDeps
from storage import housekeeping, users
from storage.logins import utcnow
from temporal.housekeeping import HousekeepingInput
from temporal.resigns import start_resign

#: A used authorize code is kept this long after its use: a retried legacy ``consume_authorize_code``
#: (sign-ins started with the code in their input) still finds the code it consumed.
USED_CODE_GRACE = timedelta(minutes=5)
#: Presence rows not refreshed for this long (720 heartbeats at the default 5 s, far beyond the freshness
#: window after which they already stop counting) belong to a replica that is gone.
DEAD_REPLICA_AFTER = timedelta(hours=1)
#: Revocation records are kept this much beyond the access-token lifetime: clock skew between replicas
#: and the database, and the revocation view's reconcile overlap (60 s).
REVOCATION_MARGIN = timedelta(hours=1)


class HousekeepingActivities:
    """Activities of ``HousekeepingWorkflow`` over the worker's database."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="housekeeping_delete_expired_logins")
    def delete_expired_logins(self, req: HousekeepingInput) -> int:
        """Login sessions (revoked or not) whose refresh lifetime is over."""
        return housekeeping.delete_expired_logins(
            self._deps.sessions, utcnow(), req.batch_size, activity.heartbeat
        )

    @activity.defn(name="housekeeping_delete_spent_authorize_codes")
    def delete_spent_authorize_codes(self, req: HousekeepingInput) -> int:
        """Authorize codes that expired, or were used more than ``USED_CODE_GRACE`` ago."""
        now = utcnow()
        return housekeeping.delete_spent_authorize_codes(
            self._deps.sessions, now, now - USED_CODE_GRACE, req.batch_size, activity.heartbeat
        )

    @activity.defn(name="housekeeping_delete_dead_presence")
    def delete_dead_presence(self, req: HousekeepingInput) -> int:
        """DM presence rows of replicas that stopped refreshing them (``DEAD_REPLICA_AFTER``)."""
        fresh = timedelta(seconds=self._deps.settings.dm_presence_fresh_seconds)
        cutoff = utcnow() - max(DEAD_REPLICA_AFTER, 10 * fresh)
        return housekeeping.delete_dead_presence(
            self._deps.sessions, cutoff, req.batch_size, activity.heartbeat
        )

    @activity.defn(name="housekeeping_delete_stale_revocations")
    def delete_stale_revocations(self, req: HousekeepingInput) -> int:
        """Revocation records older than the access-token lifetime (plus ``REVOCATION_MARGIN``)."""
        lifetime = timedelta(seconds=self._deps.settings.access_token_ttl_seconds)
        cutoff = utcnow() - lifetime - REVOCATION_MARGIN
        return housekeeping.delete_stale_revocations(
            self._deps.sessions, cutoff, req.batch_size, activity.heartbeat
        )

    @activity.defn(name="housekeeping_delete_stale_page_marks")
    def delete_stale_page_marks(self, req: HousekeepingInput) -> int:
        """Feed page marks older than ``SOSOHAPPY_FEED_PAGE_MARK_TTL_SECONDS``."""
        cutoff = utcnow() - timedelta(seconds=self._deps.settings.feed_page_mark_ttl_seconds)
        return housekeeping.delete_stale_page_marks(
            self._deps.sessions, cutoff, req.batch_size, activity.heartbeat
        )

    @activity.defn(name="housekeeping_delete_dead_devices")
    def delete_dead_devices(self, req: HousekeepingInput) -> int:
        """Device registrations whose login is revoked, expired or gone (no push reaches them)."""
        return housekeeping.delete_dead_devices(
            self._deps.sessions, utcnow(), req.batch_size, activity.heartbeat
        )

    def _resigning(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        with self._deps.sessions() as session:
            return users.resigning_accounts(session, after_id, limit)

    @activity.defn(name="housekeeping_restart_stopped_resigns")
    async def restart_stopped_resigns(self, req: HousekeepingInput) -> int:
        """Start ``ResignWorkflow`` again for every account still resigning (and not held) whose
        ``resign:<id>`` has no run going and none that completed: its run was terminated, failed or
        timed out (or never started: its outbox start is still pending). Temporal decides, by the id's
        reuse policy, so a run going is never doubled. How many started."""
        started, after_id = 0, 0
        while batch := await asyncio.to_thread(self._resigning, after_id, req.batch_size):
            for user_id, provider in batch:
                started += await start_resign(
                    activity.client(),
                    user_id,
                    provider,
                    activity.info().task_queue,
                    WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                )
                activity.heartbeat(started)
            after_id = batch[-1][0]
        return started
