"""``PushDeliveryWorkflow``: one notification to every device of one user, exactly once per business event.

Each device is sent in its own activity, so one device failing never stops the others. Transient FCM
errors are retried with exponential backoff until the request's deadline; a token FCM calls bad is
removed; a message FCM refuses (not the token) is recorded as rejected and the device kept. If no device
could be reached before the deadline, or FCM refused the message for every device, the workflow fails,
so it shows as Failed in the Web UI and can be re-run with ``temporal workflow reset``.

Devices are addressed by registration id and a like by its ids: the send activity reads the token and
composes the text, so no token, nickname or text enters the history (runs recorded before that, without
the ``push-by-device-id`` patch marker, replay their token-addressed steps).

A device's first attempt is a local activity, run by the worker inside the workflow task that scheduled
it: most pushes go through on it, and then the whole push is one workflow task, with no activity task
for the server to queue, dispatch and record. Only a transient failure turns into a regular activity,
retried with backoff until the deadline, each attempt visible in the Web UI (runs without the
``push-local-first`` marker send every attempt as a regular activity).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.firebase import SEND_CALL_SECONDS
    from activities.push import (
        DEVICE_GONE,
        MESSAGE_REJECTED,
        NO_LONGER_TRUE,
        PERMANENT,
        TOKEN_DEAD,
        DeviceSend,
        FailureRecord,
        PushActivities,
    )
    from temporal import search_attributes as sa
    from temporal.push import PushOutcome, PushRequest

#: ``workflow.patched`` id of addressing devices by registration id (``device_ids``, ``remove_device``);
#: runs without it look up and remove tokens.
BY_DEVICE_ID = "push-by-device-id"
#: ``workflow.patched`` id of sending a device's first attempt as a local activity (``send_attempts``).
LOCAL_FIRST = "push-local-first"
#: ``workflow.patched`` id of retrying a push's own steps (``Steps``) within its deadline, a token that
#: could not be removed not failing the push; runs without it try each step 5 times and then fail.
STEPS_IN_DEADLINE = "push-steps-in-deadline"
#: ``workflow.patched`` id of counting a nudge's deadline from the push's start rather than from its
#: first workflow task: a reminder or story whose push a worker takes up only after its deadline (workers
#: down from the fan-out into the night) is not sent at that hour, or on the next day; it is given up on
#: (``LATE``). Runs without it count from their first task.
NUDGE_DEADLINE_FROM_START = "push-nudge-deadline-from-start"
#: The failure of a device whose push was taken up after its deadline (recorded ``deadline:LATE``).
LATE = "LATE"
LOCAL = timedelta(seconds=10)
LOCAL_RETRY = RetryPolicy(maximum_attempts=5)
#: A step's retries wait on workflow timers, from 1 s doubling up to a minute.
STEP_FIRST_BACKOFF = timedelta(seconds=1)
STEP_MAX_BACKOFF = timedelta(minutes=1)
#: The least a step is retried for, even past the push's deadline (the failure record of a device given
#: up on at the deadline).
STEP_MIN_WINDOW = timedelta(minutes=10)
#: The first attempt's own limit: longer than a send's HTTP calls can take (``SEND_CALL_SECONDS``, 55 s),
#: so the attempt never times out while its POST still waits for FCM (the regular activity would send
#: it again: a second notice); an attempt that fails is retried as a regular activity, where every
#: attempt shows in the history.
FIRST_ATTEMPT = timedelta(seconds=SEND_CALL_SECONDS + 10)
#: Each regular send attempt's limit, longer than its HTTP call too.
SEND_ATTEMPT = timedelta(seconds=SEND_CALL_SECONDS + 30)
FIRST_BACKOFF = timedelta(seconds=1)  # send_retry_policy's initial interval


def send_retry_policy() -> RetryPolicy:
    """Exponential backoff from 1 s up to 10 min per attempt; permanent FCM errors are not retried."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=10),
        non_retryable_error_types=list(PERMANENT),
    )


def failure_cause(err: FailureError) -> BaseException | None:
    """What failed a send: the cause of a regular activity's ``ActivityError``; a local activity's
    failure is raised as it is (an ``ApplicationError`` or ``TimeoutError``)."""
    return err.cause if isinstance(err, ActivityError) else err


async def send_attempts(
    activity: Callable[..., Any], arg: Any, deadline_seconds: int, local_first: bool
) -> Any:
    """Send ``arg`` with the send activity ``activity`` until it is sent, FCM refuses it for good
    (the ``PERMANENT`` error types) or ``deadline_seconds`` pass. With ``local_first`` the first attempt
    is a local activity and only a transient failure of it starts the regular activity, one backoff
    later (FCM's Retry-After when it gave one), within what is left of the deadline."""
    if local_first:
        began = workflow.now()
        try:
            return await workflow.execute_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=FIRST_ATTEMPT,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except CancelledError:  # not a send's failure: it goes on up
            raise
        except FailureError as err:
            cause = failure_cause(err)
            if isinstance(cause, ApplicationError) and (cause.non_retryable or cause.type in PERMANENT):
                raise
            backoff = (
                cause.next_retry_delay if isinstance(cause, ApplicationError) else None
            ) or FIRST_BACKOFF
            left = timedelta(seconds=deadline_seconds) - (workflow.now() - began) - backoff
            if left <= timedelta(0):
                raise
            await workflow.sleep(backoff)
            deadline = left
    else:
        deadline = timedelta(seconds=deadline_seconds)
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=SEND_ATTEMPT,
        schedule_to_close_timeout=deadline,
        retry_policy=send_retry_policy(),
    )


@dataclass(frozen=True)
class Steps:
    """How a push runs its own steps (local activities on the database: the device lookup, a dead
    token's removal, the failure record). With ``until`` (workflow time) a step that fails is tried
    again after a workflow timer, from 1 s doubling up to a minute, until ``until`` (and for
    ``STEP_MIN_WINDOW`` at least), so a database outage shorter than the push's deadline only delays
    it; every attempt and wait is in the history, in workflow time, and no workflow task is held
    meanwhile. Without ``until`` (runs from before the ``push-steps-in-deadline`` patch): 5 attempts
    in the worker, as before."""

    until: datetime | None = None

    @staticmethod
    def within(deadline_seconds: int) -> Steps:
        """The steps of a push whose deadline is ``deadline_seconds`` from now."""
        return Steps(workflow.now() + timedelta(seconds=deadline_seconds))

    async def run(self, activity: Callable[..., Any], arg: Any) -> Any:
        """Run the step ``activity(arg)``; its last failure once its window is over."""
        if self.until is None:
            return await workflow.execute_local_activity_method(
                activity, arg, start_to_close_timeout=LOCAL, retry_policy=LOCAL_RETRY
            )
        window_ends = max(self.until, workflow.now() + STEP_MIN_WINDOW)
        backoff = STEP_FIRST_BACKOFF
        while True:
            try:
                return await workflow.execute_local_activity_method(
                    activity, arg, start_to_close_timeout=LOCAL, retry_policy=RetryPolicy(maximum_attempts=1)
                )
            except CancelledError:
                raise
            except FailureError as err:
                cause = failure_cause(err)
                if isinstance(cause, CancelledError):  # the step was cancelled: not its failure
                    raise
                if isinstance(cause, ApplicationError) and cause.non_retryable:
                    raise
                if workflow.now() + backoff > window_ends:
                    raise
            await workflow.sleep(backoff)
            backoff = min(backoff * 2, STEP_MAX_BACKOFF)


async def devices_of(user_id: int, by_id: bool, steps: Steps | None = None) -> list[int] | list[str]:
    """The user's devices, read again for every push (a local activity): registration ids, or tokens
    in runs from before devices were addressed by id."""
    lookup = PushActivities.device_ids if by_id else PushActivities.device_tokens
    result: list[int] | list[str] = await (steps or Steps()).run(lookup, user_id)
    return result


async def deliver_to_device(
    kind: str,
    workflow_id: str,
    device: int | str,
    send: Callable[[], Awaitable[Any]],
    steps: Steps | None = None,
) -> str:
    """Run ``send`` (the device's send activity) and settle the device (a registration id, or a token
    in runs from before ids): ``sent``, ``removed`` (FCM called the token bad: it is forgotten; or the
    device is no longer the receiver's), ``rejected`` (FCM refused the message: the device stays),
    ``skipped`` (what the push tells was no longer true at send time: nothing sent, the device stays) or
    ``undelivered`` (transient failures until the deadline: recorded)."""
    try:
        await send()
        return "sent"
    except CancelledError:  # not a send's failure: it goes on up
        raise
    except FailureError as err:
        cause = failure_cause(err)
        error_type = cause.type if isinstance(cause, ApplicationError) else None
        if error_type == DEVICE_GONE:
            return "removed"
        if error_type == NO_LONGER_TRUE:  # the activity counted it (sosohappy_push_skipped_total)
            return "skipped"
        steps = steps or Steps()
        if error_type in TOKEN_DEAD:
            remove = (
                PushActivities.remove_device
                if isinstance(device, int)
                else PushActivities.remove_device_token
            )
            await _step(steps, workflow_id, "removing a dead token's device", remove, device)
            return "removed"
        if error_type == MESSAGE_REJECTED:  # the activity counted it (reason INVALID_MESSAGE)
            return "rejected"
        reason = f"deadline:{error_type or 'DEADLINE'}"
        record = (
            FailureRecord(kind=kind, device_id=device, reason=reason, workflow_id=workflow_id)
            if isinstance(device, int)
            else FailureRecord(kind=kind, token=device, reason=reason, workflow_id=workflow_id)
        )
        await _step(
            steps, workflow_id, "recording a device given up on", PushActivities.record_push_failure, record
        )
        return "undelivered"


async def _step(steps: Steps, workflow_id: str, what: str, activity: Callable[..., Any], arg: Any) -> None:
    """Run one bookkeeping step of a device as ``steps`` says. A step still failing at the end of its
    window is logged and given up on, never failing the push for the other devices (a dead token left
    registered is removed by a later push to it); in runs without the patch its failure fails the
    push, as it did."""
    try:
        await steps.run(activity, arg)
    except CancelledError:
        raise
    except FailureError as err:
        cause = failure_cause(err)
        if steps.until is None or isinstance(cause, CancelledError):
            raise
        workflow.logger.warning(
            "push %s: %s failed until its deadline (%s)", workflow_id, what, type(cause).__name__
        )


def settle(device_list: list[int] | list[str], results: list[str]) -> PushOutcome:
    """The outcome of one push from each device's result, recorded as ``SosoOutcome``."""
    pairs = [(str(d), got) for d, got in zip(device_list, results, strict=True)]
    outcome = PushOutcome(**{r: [d for d, got in pairs if got == r] for r in PushOutcome.model_fields})
    workflow.upsert_search_attributes([sa.OUTCOME.value_set(outcome.label)])
    return outcome


def raise_if_failed(outcome: PushOutcome, deadline_seconds: int) -> None:
    """Fail the workflow when no device got the push: ``PushUndelivered`` (deadline) or
    ``PushRejected`` (FCM refused the message); a push found no longer true (``skipped``) is done."""
    if outcome.sent or outcome.skipped:
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


@workflow.defn(sandboxed=False)  # a hot path: see workflows/__init__.py, "Outside the sandbox"
class PushDeliveryWorkflow:
    """Deliver ``PushRequest`` to the receiver's devices and clean up dead tokens."""

    def __init__(self) -> None:
        self._local_first = False
        self._steps = Steps()
        self._deadline_seconds = 0

    @workflow.run
    async def run(self, req: PushRequest) -> PushOutcome:
        """Return which devices got it, which were removed and which stayed undelivered (by id)."""
        by_id = workflow.patched(BY_DEVICE_ID)
        self._deadline_seconds = req.deadline_seconds
        if req.nudge is not None and workflow.patched(NUDGE_DEADLINE_FROM_START):
            # A nudge's deadline ends at the next quiet start (a reminder's at midnight too): it counts
            # from the start its fan-out made, however late a worker takes the push up.
            waited = workflow.now() - workflow.info().workflow_start_time
            self._deadline_seconds = req.deadline_seconds - int(waited.total_seconds())
        self._steps = (
            Steps.within(max(self._deadline_seconds, 0)) if workflow.patched(STEPS_IN_DEADLINE) else Steps()
        )
        device_list = await devices_of(req.receiver_user_id, by_id, self._steps)
        self._local_first = workflow.patched(LOCAL_FIRST)
        results = await asyncio.gather(*(self._deliver(req, device) for device in device_list))
        outcome = settle(device_list, list(results))
        raise_if_failed(outcome, req.deadline_seconds)
        return outcome

    async def _deliver(self, req: PushRequest, device: int | str) -> str:
        if isinstance(device, int):
            # Pushes requested by an older API during a rollout still carry their text: sent as given.
            send_req = DeviceSend(
                kind=req.kind,
                device_id=device,
                receiver_user_id=req.receiver_user_id,
                like=req.like,
                nudge=req.nudge,
                title=req.title,
                body=req.body,
                data=req.data,
            )
        else:
            send_req = DeviceSend(kind=req.kind, token=device, title=req.title, body=req.body, data=req.data)

        def send() -> Awaitable[Any]:
            if self._deadline_seconds <= 0:
                return _taken_up_late(self._deadline_seconds)
            return send_attempts(
                PushActivities.send_to_device, send_req, self._deadline_seconds, self._local_first
            )

        return await deliver_to_device(req.kind, req.workflow_id, device, send, self._steps)


async def _taken_up_late(deadline_seconds: int) -> NoReturn:
    """The send of a nudge taken up after its deadline: nothing is sent, the device is given up on."""
    raise ApplicationError(
        f"taken up {-deadline_seconds}s after the push's deadline: not sent", type=LATE, non_retryable=True
    )
