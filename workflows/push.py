"""``PushDeliveryWorkflow``: one notification to every device of one user, exactly once per business event.

Each device is sent in its own activity, so one device failing never stops the others. Transient FCM
errors are retried with exponential backoff until the request's deadline; a token FCM calls bad is
removed; a message FCM refuses (not the token) is recorded as rejected and the device kept. If no device
could be reached before the deadline, or FCM refused the message for every device, the workflow fails,
so it shows as Failed in the Web UI and can be re-run with ``temporal workflow reset``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.push import (
        MESSAGE_REJECTED,
        PERMANENT,
        TOKEN_DEAD,
        DeviceSend,
        FailureRecord,
        PushActivities,
    )
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


async def device_tokens(user_id: int) -> list[str]:
    """The user's registered device tokens (a local activity: read again for every push)."""
    return await workflow.execute_local_activity_method(
        PushActivities.device_tokens, user_id, start_to_close_timeout=LOCAL, retry_policy=LOCAL_RETRY
    )


async def deliver_to_device(
    kind: str, workflow_id: str, token: str, send: Callable[[], Awaitable[Any]]
) -> str:
    """Run ``send`` (the device's send activity) and settle the device: ``sent``, ``removed`` (FCM
    called the token bad: it is forgotten), ``rejected`` (FCM refused the message: the device stays)
    or ``undelivered`` (transient failures until the deadline: recorded)."""
    try:
        await send()
        return "sent"
    except ActivityError as err:
        cause = err.cause
        error_type = cause.type if isinstance(cause, ApplicationError) else None
        if error_type in TOKEN_DEAD:
            await workflow.execute_local_activity_method(
                PushActivities.remove_device_token,
                token,
                start_to_close_timeout=LOCAL,
                retry_policy=LOCAL_RETRY,
            )
            return "removed"
        if error_type == MESSAGE_REJECTED:  # the activity counted it (reason INVALID_MESSAGE)
            return "rejected"
        await workflow.execute_local_activity_method(
            PushActivities.record_push_failure,
            FailureRecord(
                kind=kind, token=token, reason=f"deadline:{error_type or 'DEADLINE'}", workflow_id=workflow_id
            ),
            start_to_close_timeout=LOCAL,
            retry_policy=LOCAL_RETRY,
        )
        return "undelivered"


def settle(tokens: list[str], results: list[str]) -> PushOutcome:
    """The outcome of one push from each device's result, recorded as ``SosoOutcome``."""
    pairs = list(zip(tokens, results, strict=True))
    outcome = PushOutcome(**{r: [t for t, got in pairs if got == r] for r in PushOutcome.model_fields})
    workflow.upsert_search_attributes([sa.OUTCOME.value_set(outcome.label)])
    return outcome


def raise_if_failed(outcome: PushOutcome, deadline_seconds: int) -> None:
    """Fail the workflow when no device got the push: ``PushUndelivered`` (deadline) or
    ``PushRejected`` (FCM refused the message)."""
    if outcome.sent:
        return
    if outcome.undelivered:
        raise ApplicationError(
            f"push not delivered to any device within {deadline_seconds}s",
            outcome.model_dump(),
            type="PushUndelivered",
            non_retryable=True,
        )
    if outcome.rejected:
        raise ApplicationError(
            "FCM refused the push message (INVALID_ARGUMENT not about the token); devices kept",
            outcome.model_dump(),
            type="PushRejected",
            non_retryable=True,
        )


@workflow.defn
class PushDeliveryWorkflow:
    """Deliver ``PushRequest`` to the receiver's devices and clean up dead tokens."""

    @workflow.run
    async def run(self, req: PushRequest) -> PushOutcome:
        """Return which devices got it, which tokens were removed and which stayed undelivered."""
        tokens = await device_tokens(req.receiver_user_id)
        results = await asyncio.gather(*(self._deliver(req, token) for token in tokens))
        outcome = settle(tokens, list(results))
        raise_if_failed(outcome, req.deadline_seconds)
        return outcome

    async def _deliver(self, req: PushRequest, token: str) -> str:
        def send() -> Awaitable[Any]:
            return workflow.execute_activity_method(
                PushActivities.send_to_device,
                DeviceSend(kind=req.kind, token=token, title=req.title, body=req.body, data=req.data),
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(seconds=req.deadline_seconds),
                retry_policy=send_retry_policy(),
            )

        return await deliver_to_device(req.kind, req.workflow_id, token, send)
