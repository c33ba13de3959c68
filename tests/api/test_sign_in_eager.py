"""Eager sign-in: the API's own sign-in worker runs the workflow it starts, and without that worker the
worker pool does (``api.sign_in_worker``)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from devstack.processes import ManagedProcess, free_port
from storage.models import SignInRequest, User
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


def _sign_in(http: httpx.Client, email: str | None = None) -> tuple[httpx.Response, str]:
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    return app.present_code(code, verifier, email or f"e{uuid.uuid4().hex[:10]}@gmail.com"), code


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


async def test_with_no_worker_at_all_the_sign_in_answers_503_and_opens_nothing_later(
    settings: Settings, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """No sign-in worker polls the API's queue (its own is off, no pool serves the prefix): the run times
    out on the server, the request answers 503, and a pool that comes later opens no login for it."""
    private = settings.model_copy(
        update={
            "temporal_task_queue_prefix": f"nobody-{uuid.uuid4().hex[:8]}",
            "api_sign_in_worker": False,
            "sign_in_timeout_seconds": 5,
        }
    )
    email = f"late{uuid.uuid4().hex[:10]}@gmail.com"
    with (
        serve_in_thread(create_app(private), http="h11") as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        resp, code = await asyncio.to_thread(_sign_in, http, email)
        assert resp.status_code == 503, resp.text
        assert resp.json()["message"] == "sign-in is unavailable" and resp.headers["Retry-After"]
        run = await temporal_client.get_workflow_handle(sign_in_workflow_id(code)).describe()
        assert run.status == WorkflowExecutionStatus.TIMED_OUT
        pool = BackgroundWorker(private, dataclasses.replace(activity_deps, settings=private))
        pool.start()
        try:  # the pool serves the queue now: a new sign-in goes through, the timed-out one never does
            resp, _ = await asyncio.to_thread(_sign_in, http)
            assert resp.status_code == 200, resp.text
        finally:
            pool.stop()
    with activity_deps.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(User).where(User.account_email == f"{email}+kakao"))
            == 0
        )
        assert (
            s.scalar(select(func.count()).select_from(SignInRequest).where(SignInRequest.email == email)) == 0
        )
