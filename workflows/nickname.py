"""``NicknameChangeWorkflow``: one per user, fed renames by signal-with-start, applies them in order.

The users row (and so feeds, likes, blocks and devices, which refer to the user id) changes in the API
request itself; this workflow brings the stores that keep the nickname by value up to date. Renames of
one user queue up in one workflow, so two changes never interleave.
"""

from __future__ import annotations

from collections import deque
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.nickname import NicknameActivities
    from temporal.accounts import NicknameChange


@workflow.defn
class NicknameChangeWorkflow:
    """Applies the queued renames of one user (workflow ID ``nickname-change:<user id>``)."""

    def __init__(self) -> None:
        self._queue: deque[NicknameChange] = deque()
        self._applied: list[str] = []

    @workflow.signal
    def rename(self, change: NicknameChange) -> None:
        """Queue one rename."""
        self._queue.append(change)

    @workflow.run
    async def run(self) -> list[str]:
        """Apply renames until none is left; returns the ``old->new`` pairs applied."""
        # The first rename arrives with the start (signal-with-start); a rename signalled while the last
        # one is applied is picked up here, and one arriving as we complete makes Temporal retry the
        # completion with it.
        while self._queue:
            change = self._queue.popleft()
            await workflow.execute_activity_method(
                NicknameActivities.rename_in_messages,
                change,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            self._applied.append(f"{change.old}->{change.new}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._applied
