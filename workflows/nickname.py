"""``NicknameChangeWorkflow``: one per user, fed renames by signal-with-start, applies them in order.

The users row (and so feeds, likes, blocks and devices, which refer to the user id) changes in the API
request itself; this workflow brings the stores that keep the nickname by value up to date. Renames of
one user queue up in one workflow, so two changes never interleave. Each rename carries its number
(``change_id``): a start re-sent by the API's outbox after it had gone through is ignored here when this
run already has it, and by the activity (against the database) when an earlier run applied it.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

#: ``workflow.patched`` id of skipping a rename this run has already seen (histories recorded before it
#: apply every signal).
SKIP_SEEN_CHANGES = "skip-seen-nickname-changes"

#: ``rename_in_messages`` heartbeats once the legacy messages are pinned and after each converted batch
#: (``dm.migrate_messages.BATCH``, seconds at most): a worker that dies in it is found out this long after
#: its last heartbeat, and the rename is tried again on another, not after its 5 minute timeout.
RENAME_HEARTBEAT = timedelta(minutes=1)

with workflow.unsafe.imports_passed_through():
    from activities.nickname import ALREADY_APPLIED, NicknameActivities
    from temporal.accounts import NicknameChange


@workflow.defn
class NicknameChangeWorkflow:
    """Applies the queued renames of one user (workflow ID ``nickname-change:<user id>``)."""

    def __init__(self) -> None:
        self._queue: deque[NicknameChange] = deque()
        self._applied: list[str] = []
        self._last_change_id = 0

    @workflow.signal
    def rename(self, change: NicknameChange) -> None:
        """Queue one rename."""
        self._queue.append(change)

    @workflow.run
    async def run(self) -> list[str]:
        """Apply renames until none is left; returns the ``old->new`` pairs applied (re-sent ones left out)."""
        # The first rename arrives with the start (signal-with-start); a rename signalled while the last
        # one is applied is picked up here, and one arriving as we complete makes Temporal retry the
        # completion with it.
        while self._queue:
            change = self._queue.popleft()
            if change.change_id is not None:
                # Numbers of one user only grow and arrive in order; one not above the last is a re-send.
                if change.change_id <= self._last_change_id and workflow.patched(SKIP_SEEN_CHANGES):
                    continue
                self._last_change_id = max(self._last_change_id, change.change_id)
            rooms = await workflow.execute_activity_method(
                NicknameActivities.rename_in_messages,
                change,
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=RENAME_HEARTBEAT,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            if rooms != ALREADY_APPLIED:
                self._applied.append(f"{change.old}->{change.new}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._applied
