"""Starting pushes from request handlers: fire-and-forget, never failing or delaying the caller.

A push whose start fails (Temporal not connected, unreachable, refusing, no answer within 5 s) is queued
in the workflow outbox (``api.outbox.push_later``) and started by the drainer once Temporal takes it: a
like's under its own workflow id, a DM's signalled-with-start to its room's workflow again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.outbox import REQUEST_START_SECONDS, push_later, start_dm_push, start_push
from api.request_context import bind_workflow
from api.resources import Resources
from temporal.push import DmPushOutcome, DmPushRequest, DmPushStart, PushRequest
from temporal.task_queues import PUSH, named

log = logging.getLogger(__name__)

PUSH_REQUESTS = Counter(
    "sosohappy_push_requests_total", "Push workflows requested by the API", ["kind", "result"]
)

T = TypeVar("T")

#: What to do with a push whose start failed (the exception; ``None``: no client): ``True`` when it
#: was kept for later (queued), ``False`` when it is lost.
OnFailure = Callable[[BaseException | None], Awaitable[bool]]


async def _start_or_hand_over(
    kind: str,
    workflow_id: str,
    start: Awaitable[T] | None,
    on_failure: OnFailure | None,
    start_seconds: float,
) -> T | None:
    """Await ``start`` (``None``: no client) for at most ``start_seconds``; what it returned, else
    ``None``. Never raises: a failed start is handed to ``on_failure`` (counted ``queued`` when it kept
    it) or else dropped (counted ``temporal_unavailable`` or ``error``)."""
    failure: BaseException | None = None
    if start is not None:
        try:
            started = await asyncio.wait_for(start, start_seconds)
            PUSH_REQUESTS.labels(kind, "started").inc()
            return started
        except WorkflowAlreadyStartedError:
            PUSH_REQUESTS.labels(kind, "duplicate").inc()
            return None
        except Exception as exc:
            failure = exc
    if on_failure is not None and await on_failure(failure):
        PUSH_REQUESTS.labels(kind, "queued").inc()
    elif start is None:
        PUSH_REQUESTS.labels(kind, "temporal_unavailable").inc()
        log.error("push %s dropped: Temporal is not connected", workflow_id)
    else:
        PUSH_REQUESTS.labels(kind, "error").inc()
        log.error("push %s could not be started", workflow_id, exc_info=failure)
    return None


async def request_push(
    client: Client | None,
    request: PushRequest,
    task_queue: str = PUSH,
    *,
    on_failure: OnFailure | None = None,
    start_seconds: float = REQUEST_START_SECONDS,
) -> None:
    """Start ``PushDeliveryWorkflow`` under the event's ID; a repeat of the same event is a no-op.

    Never raises. When the start fails (no client, an error, no answer within ``start_seconds``) the
    push is handed to ``on_failure`` (counted ``queued`` when it kept it) or else dropped (counted
    ``temporal_unavailable`` or ``error``). A start that timed out may still have been made: a later
    start of the same ID is refused as a duplicate, so repeating it is harmless.
    """
    start = start_push(client, request, task_queue) if client is not None else None
    await _start_or_hand_over(request.kind, request.workflow_id, start, on_failure, start_seconds)


async def request_dm_push(
    client: Client | None,
    request: DmPushRequest,
    message_id: str,
    task_queue: str = PUSH,
    *,
    on_failure: OnFailure | None = None,
    start_seconds: float = REQUEST_START_SECONDS,
) -> WorkflowHandle[Any, DmPushOutcome] | None:
    """Hand one stored message to its room's ``DmPushWorkflow`` (signal-with-start: the first message
    of a burst starts it, the next ones join the running one); the handle of that run, or ``None`` when
    Temporal did not take it. Never raises: a failed start is handled as ``request_push``'s. A start that
    timed out may still have been made: the workflow ignores a repeat of a message it took."""
    start = start_dm_push(client, request, message_id, task_queue) if client is not None else None
    return await _start_or_hand_over("dm", request.workflow_id, start, on_failure, start_seconds)


def push_in_background(res: Resources, request: PushRequest) -> None:
    """Start the push without making the request wait for Temporal; a start that fails is queued in
    the workflow outbox for the drainer (counted ``queued``). It retries for ``push_deadline_seconds``
    once started, on the push queue under the deployment's prefix."""
    request = request.model_copy(update={"deadline_seconds": res.settings.push_deadline_seconds})
    bind_workflow(request.workflow_id)  # now: the start runs after the request's line is written
    queue = named(PUSH, res.settings.temporal_task_queue_prefix)
    later = functools.partial(push_later, res, request)
    res.spawn(
        request_push(res.temporal_if_connected, request, queue, on_failure=later),
        f"start-{request.workflow_id}",
    )


def dm_push_in_background(
    res: Resources, sender_user_id: int, receiver_user_id: int, message_id: str
) -> None:
    """Hand one stored message to its room's push without making the sender wait for Temporal; a start
    that fails is queued in the workflow outbox for the drainer (ids only; counted ``queued``)."""
    start = DmPushStart(
        receiver_user_id=receiver_user_id,
        sender_user_id=sender_user_id,
        message_id=message_id,
        window_seconds=res.settings.dm_push_window_seconds,
        deadline_seconds=res.settings.push_deadline_seconds,
    )
    bind_workflow(start.workflow_id)
    queue = named(PUSH, res.settings.temporal_task_queue_prefix)
    later = functools.partial(push_later, res, start)
    res.spawn(
        request_dm_push(res.temporal_if_connected, start.request, message_id, queue, on_failure=later),
        f"signal-{start.workflow_id}",
    )
