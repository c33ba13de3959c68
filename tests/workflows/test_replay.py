"""Recorded histories of every workflow replay without non-determinism against the current code.

The JSON files under ``histories/`` were recorded from real runs on the dev server (successes, retries,
token removal, an Apple outage); a change to a workflow that breaks them needs ``workflow.patched()``.
Every workflow replays inside the SDK's sandbox, those that workers run outside it for speed
(``sandboxed=False``, workflows/__init__.py) included, so what the sandbox refuses fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from config import Settings
from temporal.client import data_converter
from workers.registry import ALL_WORKFLOWS

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


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
    replayer = Replayer(
        workflows=ALL_WORKFLOWS,
        data_converter=data_converter(Settings(env="test")),
        unsandboxed_workflow_runner=SandboxedWorkflowRunner(),  # the sandbox's checks for every workflow
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
