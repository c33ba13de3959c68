"""Starting pushes from request handlers: fire-and-forget, never failing or delaying the caller."""

from __future__ import annotations

import logging

from prometheus_client import Counter
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.request_context import bind_workflow
from api.resources import Resources
from temporal import search_attributes as sa
from temporal.push import PushRequest
from temporal.task_queues import PUSH
from workflows.push import PushDeliveryWorkflow

log = logging.getLogger(__name__)

PUSH_REQUESTS = Counter(
    "sosohappy_push_requests_total", "Push workflows requested by the API", ["kind", "result"]
)


async def request_push(client: Client | None, request: PushRequest) -> None:
    """Start ``PushDeliveryWorkflow`` under the event's ID; a repeat of the same event is a no-op."""
    if client is None:
        PUSH_REQUESTS.labels(request.kind, "temporal_unavailable").inc()
        log.error("push %s dropped: Temporal is not connected", request.workflow_id)
        return
    try:
        await client.start_workflow(
            PushDeliveryWorkflow.run,
            request,
            id=request.workflow_id,
            task_queue=PUSH,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.USER_ID, str(request.receiver_user_id)),
                    SearchAttributePair(sa.KIND, f"push-{request.kind}"),
                ]
            ),
        )
        PUSH_REQUESTS.labels(request.kind, "started").inc()
    except WorkflowAlreadyStartedError:
        PUSH_REQUESTS.labels(request.kind, "duplicate").inc()
    except Exception:
        PUSH_REQUESTS.labels(request.kind, "error").inc()
        log.exception("push %s could not be started", request.workflow_id)


def push_in_background(res: Resources, request: PushRequest) -> None:
    """Start the push without making the request wait for Temporal; failures are logged and counted."""
    bind_workflow(request.workflow_id)  # now: the start runs after the request's line is written
    res.spawn(request_push(res.temporal_if_connected, request), f"start-{request.workflow_id}")
