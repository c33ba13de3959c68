"""Starting ``ResignWorkflow`` as ``resign:<user id>``: the API's outbox (once, at the request) and
housekeeping (again, for an account still resigning whose run stopped without finishing).

An operator holds a resign by marking its account held (``storage.users.RESIGN_HELD_PREFIX``) before
stopping its run: housekeeping then leaves it alone, and the account stays hidden.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from temporal import search_attributes as sa
from temporal.accounts import ResignInput
from temporal.ids import resign_workflow_id

WORKFLOW_TYPE = "ResignWorkflow"


async def start_resign(
    client: Client, user_id: int, provider: str, task_queue: str, reuse: WorkflowIDReusePolicy
) -> bool:
    """Start the resign of ``user_id``; ``False`` when ``reuse`` refuses the id (a run is going, or
    one ended as the policy does not start over)."""
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            ResignInput(user_id=user_id, provider=provider),
            id=resign_workflow_id(user_id),
            task_queue=task_queue,
            id_reuse_policy=reuse,
            search_attributes=sa.about(user_id, "resign"),
        )
        return True
    except WorkflowAlreadyStartedError:
        return False
