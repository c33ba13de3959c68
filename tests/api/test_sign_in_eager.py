"""Eager sign-in: the API's own sign-in worker runs the workflow it starts, and without that worker the
worker pool does (``api.sign_in_worker``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from devstack.processes import ManagedProcess, free_port
from temporal import task_queues
from temporal.client import connect
from temporal.devserver import start_dev_args, wait_until_serving
from temporal.ids import sign_in_workflow_id
from tests.fixtures.app import BackgroundWorker
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient, code_verifier

API_WORKER_SUFFIX = "/api-sign-in"


async def _task_identities(client: Client, code: str) -> tuple[list[str], list[str]]:
    """Who started and who completed each workflow task of ``code``'s sign-in (in history order)."""
    history = await client.get_workflow_handle(sign_in_workflow_id(code)).fetch_history()
    started = [
        e.workflow_task_started_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    completed = [
        e.workflow_task_completed_event_attributes.identity
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    return started, completed


async def _sign_in_pollers(client: Client) -> list[str]:
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queues.SIGN_IN),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return [poller.identity for poller in resp.pollers]


def _sign_in(http: httpx.Client) -> tuple[httpx.Response, str]:
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    return app.present_code(code, verifier, f"e{uuid.uuid4().hex[:10]}@gmail.com"), code


async def test_the_api_worker_runs_the_sign_in_it_started(
    http: httpx.Client, temporal_client: Client
) -> None:
    # The API's worker polls the sign-in queue once its client is connected (a generous deadline on
    # that condition only); from then on a start with a free slot is handed back to it.
    deadline = time.monotonic() + 60
    while not any(p.endswith(API_WORKER_SUFFIX) for p in await _sign_in_pollers(temporal_client)):
        assert time.monotonic() < deadline, await _sign_in_pollers(temporal_client)
        await asyncio.sleep(0.2)
    resp, code = await asyncio.to_thread(_sign_in, http)
    assert resp.status_code == 200, resp.text
    started, completed = await _task_identities(temporal_client, code)
    # One workflow task did everything (local activities), started eagerly in the start call (so the
    # server records the starter's identity, not a poller's) and completed by the API's worker.
    assert len(started) == len(completed) == 1, (started, completed)
    assert not started[0].endswith(API_WORKER_SUFFIX)
    assert completed[0].endswith(API_WORKER_SUFFIX)


@pytest.fixture(scope="module")
def without_api_worker(
    settings: Settings, activity_deps: ActivityDeps, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """An API whose sign-in worker is off and the worker pool, on a Temporal server of their own (no
    other API's sign-in worker polls there): (API URL, Temporal address)."""
    directory: Path = tmp_path_factory.mktemp("no-api-worker")
    port = free_port()
    server = ManagedProcess(
        "temporal-no-api-worker",
        start_dev_args(port=port, ui_port=None, db_file=directory / "t.db"),
        directory / "temporal.log",
    ).start()
    try:
        server.wait_for_port(port, timeout=90)
        wait_until_serving(f"127.0.0.1:{port}")
        private = settings.model_copy(
            update={"temporal_address": f"127.0.0.1:{port}", "api_sign_in_worker": False}
        )
        pool = BackgroundWorker(private, activity_deps)
        pool.start()
        try:
            with serve_in_thread(create_app(private), http="h11") as url:
                yield url, private.temporal_address
        finally:
            pool.stop()
    finally:
        server.stop()


async def test_without_the_api_worker_the_pool_runs_the_sign_in(without_api_worker: tuple[str, str]) -> None:
    url, address = without_api_worker
    client = await connect(Settings(env="test", temporal_address=address))
    assert not any(p.endswith(API_WORKER_SUFFIX) for p in await _sign_in_pollers(client))
    with httpx.Client(base_url=url, timeout=60) as http:
        resp, code = await asyncio.to_thread(_sign_in, http)
    assert resp.status_code == 200, resp.text
    assert resp.headers["email"].endswith("+kakao")
    started, completed = await _task_identities(client, code)
    assert started and completed
    assert not any(identity.endswith(API_WORKER_SUFFIX) for identity in started + completed)
