"""Recorded histories of every workflow replay without non-determinism against the current code.

The JSON files under ``histories/`` were recorded from real runs on the dev server (successes, retries,
token removal, an Apple outage); a change to a workflow that breaks them needs ``workflow.patched()``.
Every workflow replays inside the SDK's sandbox, those that workers run outside it for speed
(``sandboxed=False``, workflows/__init__.py) included, so what the sandbox refuses fails here.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter, DefaultFailureConverter
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from config import Settings
from temporal.client import data_converter
from tests.workflows.clock_reader import ReadsTheWallClock
from workers.registry import ALL_WORKFLOWS

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def sandboxed_replayer(workflows: Sequence[type], converter: DataConverter) -> Replayer:
    """A replayer that runs every workflow inside the sandbox, those defined ``sandboxed=False`` too."""
    return Replayer(
        workflows=workflows, data_converter=converter, unsandboxed_workflow_runner=SandboxedWorkflowRunner()
    )


def test_every_workflow_has_a_recorded_history() -> None:
    recorded = {
        json.loads(p.read_text())["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"][
            "name"
        ]
        for p in HISTORIES
    }
    registered = {wf.__name__ for wf in ALL_WORKFLOWS}
    assert registered <= recorded, f"no recorded history for {registered - recorded}"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    # The files hold decoded payloads (``recording.py``): the one reader that accepts plain ones.
    replayer = sandboxed_replayer(ALL_WORKFLOWS, data_converter(Settings(env="test"), accept_plain=True))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_the_replay_sandbox_catches_what_an_unsandboxed_workflow_must_not_do(
    temporal_client: Client,
) -> None:
    queue = f"replay-guard-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[ReadsTheWallClock]):
        handle = await temporal_client.start_workflow(
            ReadsTheWallClock.run, id=queue, task_queue=queue, run_timeout=timedelta(seconds=60)
        )
        assert await handle.result()  # outside the sandbox the worker runs it
    history = await handle.fetch_history()
    # A replay writes no history, so its failures need not be encrypted: read the message in the clear.
    readable = dataclasses.replace(
        temporal_client.data_converter, failure_converter_class=DefaultFailureConverter
    )
    as_tested = sandboxed_replayer([ReadsTheWallClock], readable)
    result = await as_tested.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "Cannot access datetime.datetime.now" in str(result.replay_failure)
