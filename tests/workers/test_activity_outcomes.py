"""Every activity attempt is counted by outcome, timed, and logged as one JSON line (real worker, real
dev server, a fresh task queue per test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from api.push import request_push
from temporal.push import PushOutcome, like_push
from tests.fixtures.errors import duplicate_key_error
from tests.fixtures.logs import CapturedLogs, captured_logs
from tests.fixtures.waiting import eventually
from workers.interceptors import ActivityAttemptInterceptor


@dataclass
class Step:
    """The single input of the test activities; ``user_id`` is what the log line should name."""

    user_id: int
    note: str


@activity.defn(name="outcome_flaky")
def flaky(step: Step) -> str:
    """Fails its first attempt with a retryable error (carrying a bearer token), then succeeds."""
    if activity.info().attempt == 1:
        raise ApplicationError("upstream said 503 to Bearer eyJhbGciOi.secret-part.sig", type="Upstream503")
    return f"done {step.note}"


#: What a database error could quote: the value of a duplicate key, a statement's bound values.
SECRET_EMAIL = "secret.person@example.com+kakao"


@activity.defn(name="outcome_duplicate")
def duplicate(step: Step) -> str:
    """Fails its first attempt with a real SQLAlchemy error whose text quotes ``SECRET_EMAIL`` (an
    engine that shows its bound values, and MySQL's duplicate-entry wording), then succeeds."""
    if activity.info().attempt == 1:
        raise duplicate_key_error(SECRET_EMAIL)
    return f"done {step.note}"


@activity.defn(name="outcome_refused")
def refused(step: Step) -> str:
    """Always refuses, permanently."""
    raise ApplicationError("x" * 1000, type="Refused", non_retryable=True)


@activity.defn(name="outcome_waits")
async def waits(step: Step) -> str:
    """Heartbeats until it is cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


@workflow.defn(sandboxed=False)
class OneStepWorkflow:
    """Runs the named activity once with a quick retry policy (three attempts)."""

    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            name,
            Step(user_id=4242, note=name),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=20),
            heartbeat_timeout=timedelta(seconds=2),
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3),
        )


OUTCOMES = ("success", "retryable_error", "non_retryable_error", "cancelled")


def _counts(activity_name: str) -> dict[str, float]:
    counts = {
        outcome: REGISTRY.get_sample_value(
            "sosohappy_activity_attempts_total", {"activity": activity_name, "outcome": outcome}
        )
        or 0.0
        for outcome in OUTCOMES
    }
    counts["timed"] = (
        REGISTRY.get_sample_value("sosohappy_activity_duration_seconds_count", {"activity": activity_name})
        or 0.0
    )
    return counts


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in before if after[k] != before[k]}


@pytest.fixture
async def queue(temporal_client: Client) -> AsyncIterator[str]:
    """A fresh task queue served by a real worker with the attempt interceptor."""
    name = f"outcomes-{uuid.uuid4()}"
    with ThreadPoolExecutor(4) as executor:
        async with Worker(
            temporal_client,
            task_queue=name,
            workflows=[OneStepWorkflow],
            activities=[flaky, duplicate, refused, waits],
            activity_executor=executor,
            interceptors=[ActivityAttemptInterceptor()],
        ):
            yield name


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    """The JSON lines logged while the test runs."""
    with captured_logs() as captured:
        yield captured


async def test_a_retried_attempt_and_its_success_are_counted_and_logged(
    temporal_client: Client, queue: str, logs: CapturedLogs
) -> None:
    before = _counts("outcome_flaky")
    handle = await temporal_client.start_workflow(
        OneStepWorkflow.run, "outcome_flaky", id=f"flaky-{uuid.uuid4()}", task_queue=queue
    )
    assert await handle.result() == "done outcome_flaky"
    assert _delta(before, _counts("outcome_flaky")) == {"retryable_error": 1, "success": 1, "timed": 2}

    lines = logs.lines(event="activity_attempt", workflow_id=handle.id)
    assert [(line["attempt"], line["outcome"]) for line in lines] == [(1, "retryable_error"), (2, "success")]
    for line in lines:
        assert line["activity"] == "outcome_flaky" and line["activity_id"] == "1"
        assert line["workflow_type"] == "OneStepWorkflow" and line["run_id"] == handle.result_run_id
        assert line["task_queue"] == queue and line["user_id"] == 4242
        assert line["duration_ms"] >= 0 and line["logger"] == "workers.activity"
    failed, succeeded = lines
    assert failed["level"] == "WARNING" and succeeded["level"] == "INFO"
    assert failed["error_type"] == "ApplicationError" and failed["error_app_type"] == "Upstream503"
    assert failed["error"] == "upstream said 503 to [redacted]"
    assert "error" not in succeeded and "secret-part" not in logs.text


async def test_a_database_error_leaves_the_worker_as_its_type_and_code_only(
    temporal_client: Client, queue: str, logs: CapturedLogs
) -> None:
    handle = await temporal_client.start_workflow(
        OneStepWorkflow.run, "outcome_duplicate", id=f"duplicate-{uuid.uuid4()}", task_queue=queue
    )
    assert await handle.result() == "done outcome_duplicate"  # retried as before
    failed, succeeded = logs.lines(event="activity_attempt", workflow_id=handle.id)
    assert (failed["outcome"], failed["error_type"]) == ("retryable_error", "IntegrityError")
    assert failed["error"] == "sqlite3 IntegrityError 1062 (message withheld)"
    assert succeeded["outcome"] == "success" and SECRET_EMAIL not in logs.text
    # The failure the history keeps (the retried attempt's last failure): the same text, no cause.
    history = await handle.fetch_history()
    [started] = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started.attempt == 2 and SECRET_EMAIL.encode() not in history.to_json().encode()
    cause = await temporal_client.data_converter.decode_failure(started.last_failure)
    assert isinstance(cause, ApplicationError) and cause.type == "IntegrityError"
    assert cause.message == "sqlite3 IntegrityError 1062 (message withheld)" and cause.__cause__ is None


async def test_a_non_retryable_failure_is_one_attempt(
    temporal_client: Client, queue: str, logs: CapturedLogs
) -> None:
    before = _counts("outcome_refused")
    handle = await temporal_client.start_workflow(
        OneStepWorkflow.run, "outcome_refused", id=f"refused-{uuid.uuid4()}", task_queue=queue
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert _delta(before, _counts("outcome_refused")) == {"non_retryable_error": 1, "timed": 1}
    [line] = logs.lines(event="activity_attempt", workflow_id=handle.id)
    assert (line["attempt"], line["outcome"], line["error_app_type"]) == (1, "non_retryable_error", "Refused")
    assert line["error"] == "x" * 300 + "…"  # truncated


async def test_a_cancelled_attempt_is_counted_as_cancelled(
    temporal_client: Client, queue: str, logs: CapturedLogs
) -> None:
    before = _counts("outcome_waits")
    handle = await temporal_client.start_workflow(
        OneStepWorkflow.run, "outcome_waits", id=f"waits-{uuid.uuid4()}", task_queue=queue
    )

    async def running() -> bool:
        return bool((await handle.describe()).raw_description.pending_activities)

    await eventually(running, "the attempt running")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert _delta(before, _counts("outcome_waits")) == {"cancelled": 1, "timed": 1}
    [line] = logs.lines(event="activity_attempt", workflow_id=handle.id)
    assert (line["attempt"], line["outcome"], line["level"]) == (1, "cancelled", "INFO")


@pytest.mark.usefixtures("worker")
async def test_the_projects_workers_record_their_attempts(
    temporal_client: Client, logs: CapturedLogs
) -> None:
    """``workers.main.build_workers`` (the session worker) installs the interceptor on every queue."""
    before = _counts("device_ids")
    req = like_push(int(uuid.uuid4().int % 10**9), 1, 10**9 + 7, 2024012017042712)
    await request_push(temporal_client, req)
    outcome = await temporal_client.get_workflow_handle(req.workflow_id, result_type=PushOutcome).result()
    assert outcome.sent == []
    # Pushes started by earlier tests may finish meanwhile on the shared worker: at least ours counted.
    delta = _delta(before, _counts("device_ids"))
    assert delta["success"] >= 1 and delta["timed"] == delta["success"] and set(delta) == {"success", "timed"}
    [line] = logs.lines(event="activity_attempt", workflow_id=req.workflow_id)
    assert (line["activity"], line["workflow_type"], line["task_queue"]) == (
        "device_ids",
        "PushDeliveryWorkflow",
        "sosohappy-push",
    )
