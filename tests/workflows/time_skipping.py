"""The time-skipping test server with the project's data converter and search attributes, for tests
whose workflows wait on timers or long retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from temporal import devserver
from temporal import search_attributes as sa
from temporal.client import data_converter

STARTUP_SECONDS = 120  # a condition's deadline, not a timing: the server is up once it answers


@asynccontextmanager
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A fresh time-skipping server (installed binary), shut down afterwards."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=devserver.test_server_path(),
        data_converter=data_converter(Settings(env="test")),
        # The SDK waits 5 s by default; on a loaded machine the server takes longer to answer.
        test_server_startup_timeout=timedelta(seconds=STARTUP_SECONDS),
    )
    try:
        # The test server starts without our search attributes; register them as the dev stack does.
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in sa.ALL},
            )
        )
        yield env
    finally:
        await env.shutdown()
