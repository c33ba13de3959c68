"""The worker's health server (``/healthz``, ``/readyz``, ``/metrics``) and the Temporal SDK's own
metrics endpoint, against the session's dev server with a real worker on a fresh task queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from config import Settings
from devstack.processes import free_port
from temporal.client import connect
from tests.fixtures.clock import FakeClock
from workers.health import HealthServer, WorkerHealth
from workers.interceptors import ActivityAttemptInterceptor
from workers.main import temporal_runtime


@activity.defn(name="health_probe_step")
def probe_step(note: str) -> str:
    """A regular (not local) activity, so the SDK reports activity metrics."""
    return note.upper()


@workflow.defn(sandboxed=False)
class HealthProbeWorkflow:
    """One activity, then done."""

    @workflow.run
    async def run(self, note: str) -> str:
        return await workflow.execute_activity(probe_step, note, start_to_close_timeout=timedelta(seconds=10))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def health(clock: FakeClock) -> AsyncIterator[tuple[WorkerHealth, str]]:
    """A health state on a fake clock (time passes only when a test moves it), beating on this test's
    event loop, served on a free port."""
    state = WorkerHealth(
        stale_after=30, beat_interval=0.05, check_interval=0.2, check_timeout=10, clock=clock
    )
    server = HealthServer(state, "127.0.0.1", 0).start()
    beating = asyncio.create_task(state.keep_beating())
    try:
        yield state, f"http://127.0.0.1:{server.port}"
    finally:
        beating.cancel()
        server.stop()


async def _until(url: str, status: int, reason: str | None = None) -> httpx.Response:
    """Poll ``url`` (up to 60 s) until it answers ``status`` (with ``reason``, when given); the last
    answer either way."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while True:
            resp = await http.get(url)
            if resp.status_code == status and (reason is None or resp.json().get("reason") == reason):
                return resp
            if time.monotonic() > deadline:
                return resp
            await asyncio.sleep(0.05)


async def test_ready_only_while_every_worker_polls_and_sdk_metrics_are_served(
    health: tuple[WorkerHealth, str], temporal_address: str
) -> None:
    state, base = health
    sdk_port = free_port()
    settings = Settings(env="test", temporal_address=temporal_address, worker_temporal_metrics_port=sdk_port)
    client = await connect(settings, runtime=temporal_runtime(settings))
    checking = asyncio.create_task(state.keep_checking(client))
    try:
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        # Temporal answers the first check; only the workers are missing.
        not_started = await _until(f"{base}/readyz", 503, "workers not started")
        assert not_started.status_code == 503
        assert not_started.json() == {"status": "not ready", "workers": {}, "reason": "workers not started"}

        queue = f"health-{uuid.uuid4()}"
        with ThreadPoolExecutor(2) as executor:
            worker = Worker(
                client,
                task_queue=queue,
                workflows=[HealthProbeWorkflow],
                activities=[probe_step],
                activity_executor=executor,
                interceptors=[ActivityAttemptInterceptor()],
            )
            state.watch([worker])
            idle = httpx.get(f"{base}/readyz")
            assert idle.status_code == 503 and idle.json()["reason"] == f"not polling: {queue}"
            running = asyncio.create_task(worker.run())
            ready = await _until(f"{base}/readyz", 200)
            assert ready.status_code == 200, ready.text
            assert ready.json() == {"status": "ready", "workers": {queue: "polling"}}

            result = await client.execute_workflow(
                HealthProbeWorkflow.run, "ok", id=f"health-{uuid.uuid4()}", task_queue=queue
            )
            assert result == "OK"
            ours = httpx.get(f"{base}/metrics")
            assert ours.headers["content-type"].startswith("text/plain")
            assert (
                'sosohappy_activity_attempts_total{activity="health_probe_step",outcome="success"}'
                in ours.text
            )
            assert 'sosohappy_activity_duration_seconds_count{activity="health_probe_step"}' in ours.text

            sdk = await _until(f"http://127.0.0.1:{sdk_port}/metrics", 200)
            names = {line.split("{")[0].split(" ")[0] for line in sdk.text.splitlines() if line[:1] != "#"}
            for name in (
                "temporal_num_pollers",
                "temporal_worker_task_slots_available",
                "temporal_request_total",
                "temporal_workflow_completed_total",
                "temporal_workflow_task_schedule_to_start_latency_seconds_bucket",
                "temporal_activity_execution_latency_seconds_bucket",
                "temporal_activity_schedule_to_start_latency_seconds_bucket",
            ):
                assert name in names, sorted(names)
            assert f'task_queue="{queue}"' in sdk.text

            await worker.shutdown()
            await running
        stopped = httpx.get(f"{base}/readyz")
        assert stopped.status_code == 503 and stopped.json()["reason"] == f"not polling: {queue}"
    finally:
        checking.cancel()


async def test_liveness_fails_while_the_event_loop_is_blocked(
    health: tuple[WorkerHealth, str], clock: FakeClock
) -> None:
    _, base = health
    assert (await _until(f"{base}/healthz", 200)).status_code == 200
    # Block this loop (the heartbeat task cannot run) while more than stale_after seconds pass; the
    # server's thread still answers, with 503.
    clock.now += 31
    blocked = httpx.get(f"{base}/healthz")
    assert blocked.status_code == 503
    assert blocked.json() == {"status": "stale", "heartbeat_age_seconds": 31.0}
    # Once the loop runs again, its heartbeat task stamps the time.
    alive = await _until(f"{base}/healthz", 200)
    assert alive.json() == {"status": "ok", "heartbeat_age_seconds": 0.0}
    assert httpx.get(f"{base}/nothing").status_code == 404


async def test_readiness_names_an_unreachable_temporal(health: tuple[WorkerHealth, str]) -> None:
    state, base = health
    client = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    await state.check_temporal(client)
    resp = httpx.get(f"{base}/readyz")
    assert resp.status_code == 503
    assert "temporal health check failed" in resp.json()["reason"]
    assert "workers not started" in resp.json()["reason"]
