"""``PushDeliveryWorkflow``: one notification to every device of one user, exactly once per business event.

Each device is sent in its own activity, so one device failing never stops the others. Transient FCM
errors are retried with exponential backoff until the request's deadline; permanent ones remove the
token. If no device could be reached before the deadline, the workflow fails, so it shows as Failed in
the Web UI and can be re-run with ``temporal workflow reset``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.push import PERMANENT, DeviceSend, FailureRecord, PushActivities
    from temporal import search_attributes as sa
    from temporal.push import PushOutcome, PushRequest

LOCAL = timedelta(seconds=10)
LOCAL_RETRY = RetryPolicy(maximum_attempts=5)


def send_retry_policy() -> RetryPolicy:
    """Exponential backoff from 1 s up to 10 min per attempt; permanent FCM errors are not retried."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
        non_retryable_error_types=list(PERMANENT),
    )


@workflow.defn
class PushDeliveryWorkflow:
    """Deliver ``PushRequest`` to the receiver's devices and clean up dead tokens."""

    @workflow.run
    async def run(self, req: PushRequest) -> PushOutcome:
        """Return which devices got it, which tokens were removed and which stayed undelivered."""
        tokens = await workflow.execute_local_activity_method(
            PushActivities.device_tokens,
            req.receiver_user_id,
            start_to_close_timeout=LOCAL,
            retry_policy=LOCAL_RETRY,
        )
        results = await asyncio.gather(*(self._deliver(req, token) for token in tokens))
        outcome = PushOutcome(
            sent=[t for t, r in zip(tokens, results, strict=True) if r == "sent"],
            removed=[t for t, r in zip(tokens, results, strict=True) if r == "removed"],
            undelivered=[t for t, r in zip(tokens, results, strict=True) if r == "undelivered"],
        )
        workflow.upsert_search_attributes([sa.OUTCOME.value_set(outcome.label)])
        if outcome.undelivered and not outcome.sent:
            raise ApplicationError(
                f"push not delivered to any device within {req.deadline_seconds}s",
                outcome.model_dump(),
                type="PushUndelivered",
                non_retryable=True,
            )
        return outcome

    async def _deliver(self, req: PushRequest, token: str) -> str:
        try:
            await workflow.execute_activity_method(
                PushActivities.send_to_device,
                DeviceSend(kind=req.kind, token=token, title=req.title, body=req.body, data=req.data),
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=req.deadline_seconds),
                retry_policy=send_retry_policy(),
            )
            return "sent"
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type in PERMANENT:
                await workflow.execute_local_activity_method(
                    PushActivities.remove_device_token,
                    token,
                    start_to_close_timeout=LOCAL,
                    retry_policy=LOCAL_RETRY,
                )
                return "removed"
            reason = cause.type if isinstance(cause, ApplicationError) and cause.type else "DEADLINE"
            await workflow.execute_local_activity_method(
                PushActivities.record_push_failure,
                FailureRecord(
                    kind=req.kind, token=token, reason=f"deadline:{reason}", workflow_id=req.workflow_id
                ),
                start_to_close_timeout=LOCAL,
                retry_policy=LOCAL_RETRY,
            )
            return "undelivered"
