"""``ResignWorkflow``: remove every trace of a user, step by step, each step idempotent and retried.

Logins are revoked first (the API already did so synchronously; repeating is harmless), then the Apple
token is revoked for Apple users (a permanent refusal is recorded, not fatal), then feeds, likes, blocks,
messages, devices and pending pushes, and finally the account row; then the messages once more (any
sent to the user meanwhile: none can be stored once the row is gone).

The input is the user id and provider only: the Apple step reads the refresh token from the account row
itself, which is deleted last, so the token is there whenever that step (or a retry of it) runs, and it
never enters the history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.resign import ResignActivities
    from temporal import search_attributes as sa
    from temporal.accounts import ResignInput, ResignResult

#: ``workflow.patched`` id of deleting the messages by user id (histories recorded before it delete
#: them by the nickname in the input).
DELETE_MESSAGES_BY_USER_ID = "resign-delete-messages-by-user-id"

#: ``workflow.patched`` id of revoking the Apple token read from the account row (histories recorded
#: before it pass the token in the input to ``resign_revoke_apple``).
APPLE_TOKEN_FROM_ACCOUNT = "resign-apple-token-from-account"

#: ``workflow.patched`` id of deleting the user's messages once more after the account row: a message
#: sent to the user between the first deletion and the account's is stored (its room row needs the
#: account row), and none can be after it.
DELETE_LATE_MESSAGES = "resign-delete-late-messages"

STEP_TIMEOUT = timedelta(minutes=5)
#: A step that works in batches (feeds, messages, pushes to cancel) heartbeats after each, a batch taking
#: a fraction of a second: a worker that dies in it (SIGKILL, a node lost, OOM) misses its heartbeat, and
#: the step is tried again on another worker within this, not after ``STEP_TIMEOUT``. An attempt whose
#: batch runs longer (a lock wait, a stalled store) is tried again beside it: harmless, as every step is
#: idempotent and what a batch deleted stays deleted.
BATCH_HEARTBEAT = timedelta(seconds=30)
#: The limit of a step that is one short transaction over the user's few rows (logins, likes and blocks,
#: devices, the account row) or one call (Apple's revoke, with 10 s timeouts): it cannot heartbeat while it
#: waits on its statement and takes milliseconds, so a worker that dies in it holds the resign this
#: long, and one that runs longer is tried again beside it, as above.
QUICK_STEP_TIMEOUT = timedelta(seconds=30)
#: (A step's limits are not what a replay compares, its type and id are: histories scheduled with other
#: limits replay as they are, so changing them needs no ``workflow.patched``.)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


async def _step(
    activity: Any,
    arg: Any,
    *,
    start_to_close: timedelta = STEP_TIMEOUT,
    heartbeat: timedelta | None = None,
) -> Any:
    """Run one resign step with unlimited, backed-off retries, each attempt limited to ``start_to_close``
    (and to ``heartbeat`` between two of its heartbeats)."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=start_to_close,
        retry_policy=STEP_RETRY,
        heartbeat_timeout=heartbeat,
    )


@workflow.defn
class ResignWorkflow:
    """One resign per account (workflow ID ``resign:<user id>``)."""

    @workflow.run
    async def run(self, req: ResignInput) -> ResignResult:
        """Delete the user's data everywhere and return what was removed."""
        result = ResignResult()
        await _step(ResignActivities.revoke_logins, req.user_id, start_to_close=QUICK_STEP_TIMEOUT)
        if workflow.patched(APPLE_TOKEN_FROM_ACCOUNT):
            if req.provider == "apple":
                result.apple = await _step(
                    ResignActivities.revoke_apple_of_user, req.user_id, start_to_close=QUICK_STEP_TIMEOUT
                )
        elif req.provider == "apple" and req.apple_refresh_token and req.apple_refresh_token != "-":
            result.apple = await _step(
                ResignActivities.revoke_apple, req.apple_refresh_token, start_to_close=QUICK_STEP_TIMEOUT
            )
        result.feeds_deleted = await _step(
            ResignActivities.delete_feeds, req.user_id, heartbeat=BATCH_HEARTBEAT
        )
        await _step(ResignActivities.delete_likes_and_blocks, req.user_id, start_to_close=QUICK_STEP_TIMEOUT)
        if workflow.patched(DELETE_MESSAGES_BY_USER_ID):
            result.messages_deleted = await _step(
                ResignActivities.delete_user_messages, req.user_id, heartbeat=BATCH_HEARTBEAT
            )
        elif req.nickname:
            result.messages_deleted = await _step(
                ResignActivities.delete_messages, req.nickname, heartbeat=BATCH_HEARTBEAT
            )
        result.devices_removed = await _step(
            ResignActivities.remove_devices, req.user_id, start_to_close=QUICK_STEP_TIMEOUT
        )
        result.pushes_cancelled = await _step(
            ResignActivities.cancel_pushes, req.user_id, heartbeat=BATCH_HEARTBEAT
        )
        await _step(ResignActivities.delete_account, req.user_id, start_to_close=QUICK_STEP_TIMEOUT)
        if workflow.patched(DELETE_LATE_MESSAGES):
            result.messages_deleted += await _step(
                ResignActivities.delete_user_messages, req.user_id, heartbeat=BATCH_HEARTBEAT
            )
        outcome = "apple-refused" if result.apple == "refused" else "deleted"
        workflow.upsert_search_attributes([sa.OUTCOME.value_set(outcome)])
        return result
