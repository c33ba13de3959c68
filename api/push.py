"""Starting pushes from request handlers: fire-and-forget, never failing or delaying the caller.

A like's push whose start fails (Temporal not connected, unreachable, refusing) is queued in the
workflow outbox (``api.outbox.push_later``) and started by the drainer once Temporal takes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.outbox import REQUEST_START_SECONDS, push_later, start_push
from api.request_context import bind_workflow
from api.resources import Resources
from temporal import search_attributes as sa
from temporal.push import DmArrived, DmPushOutcome, DmPushRequest, PushRequest
from temporal.task_queues import PUSH, named
from workflows.dm_push import DmPushWorkflow

log = logging.getLogger(__name__)

PUSH_REQUESTS = Counter(
    "sosohappy_push_requests_total", "Push workflows requested by the API", ["kind", "result"]
)


#: What to do with a push whose start failed (the exception; ``None``: no client): ``True`` when it
#: was kept for later (queued), ``False`` when it is lost.
OnFailure = Callable[[BaseException | None], Awaitable[bool]]


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
    failure: BaseException | None = None
    if client is not None:
        try:
            await asyncio.wait_for(start_push(client, request, task_queue), start_seconds)
            PUSH_REQUESTS.labels(request.kind, "started").inc()
            return
        except WorkflowAlreadyStartedError:
            PUSH_REQUESTS.labels(request.kind, "duplicate").inc()
            return
        except Exception as exc:
            failure = exc
    if on_failure is not None and await on_failure(failure):
        PUSH_REQUESTS.labels(request.kind, "queued").inc()
    elif client is None:
        PUSH_REQUESTS.labels(request.kind, "temporal_unavailable").inc()
        log.error("push %s dropped: Temporal is not connected", request.workflow_id)
    else:
        PUSH_REQUESTS.labels(request.kind, "error").inc()
        log.error("push %s could not be started", request.workflow_id, exc_info=failure)


async def request_dm_push(
    client: Client | None, request: DmPushRequest, message_id: str, task_queue: str = PUSH
) -> WorkflowHandle[Any, DmPushOutcome] | None:
    """Hand one stored message to its room's ``DmPushWorkflow`` (signal-with-start: the first message
    of a burst starts it, the next ones join the running one); the handle of that run, or ``None`` when
    Temporal could not be asked (logged and counted)."""
    if client is None:
        PUSH_REQUESTS.labels("dm", "temporal_unavailable").inc()
        log.error("push %s dropped: Temporal is not connected", request.workflow_id)
        return None
    try:
        handle = await client.start_workflow(
            DmPushWorkflow.run,
            request,
            id=request.workflow_id,
            task_queue=task_queue,
            # A finished run of this room is history: the next message starts a new run.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            start_signal="message_arrived",
            start_signal_args=[DmArrived(message_id=message_id)],
            search_attributes=sa.about(request.receiver_user_id, "push-dm"),
        )
        PUSH_REQUESTS.labels("dm", "started").inc()
        return handle
    except Exception:
        PUSH_REQUESTS.labels("dm", "error").inc()
        log.exception("push %s could not be started", request.workflow_id)
        return None


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
    """Queue the DM push of one stored message without making the sender wait for Temporal."""
    request = DmPushRequest(
        receiver_user_id=receiver_user_id,
        sender_user_id=sender_user_id,
        window_seconds=res.settings.dm_push_window_seconds,
        deadline_seconds=res.settings.push_deadline_seconds,
    )
    bind_workflow(request.workflow_id)
    queue = named(PUSH, res.settings.temporal_task_queue_prefix)
    res.spawn(
        request_dm_push(res.temporal_if_connected, request, message_id, queue),
        f"signal-{request.workflow_id}",
    )
