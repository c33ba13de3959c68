"""Shared pieces of the sign-in tests: what the Temporal server knows about a code's sign-in workflow."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from temporal.ids import sign_in_workflow_id


async def sign_in_runs(client: Client, code: str) -> list[str]:
    """The run id of the sign-in workflow of ``code`` on the server (empty when none was ever started)."""
    try:
        desc = await client.get_workflow_handle(sign_in_workflow_id(code)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return []
        raise
    return [desc.run_id]
