"""The registration Job's script (``temporal/k8s/register-job.yaml``), run for real with the installed
``temporal`` CLI against the session's Temporal server: it creates the namespace and every search
attribute of ``temporal.search_attributes``, the housekeeping Schedule of ``temporal.housekeeping`` and the
nudge Schedules of ``temporal.nudges``, and
running it again changes nothing (a schedule an operator paused stays paused)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import replace
from typing import Any

from temporalio.client import ScheduleActionStartWorkflow

from config import Settings
from temporal import housekeeping, nudges, search_attributes, task_queues
from temporal.client import connect
from tests.k8s.manifests import register_container
from tests.k8s.tools import require_tool


def _run_script(temporal_address: str, namespace: str) -> subprocess.CompletedProcess[str]:
    """The Job's command with the Job's environment, pointed at ``temporal_address`` and ``namespace``."""
    container = register_container()
    env = {e["name"]: e["value"] for e in container["env"]}
    env |= {"TEMPORAL_ADDRESS": temporal_address, "SOSO_NAMESPACE": namespace}
    cli_dir = os.path.dirname(require_tool("temporal"))
    env |= {"PATH": f"{cli_dir}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [*container["command"], *container["args"]], env=env, capture_output=True, text=True, timeout=120
    )


def _operator(address: str, namespace: str, *command: str) -> Any:
    """``temporal operator <command> --output json`` on ``namespace``, parsed."""
    flags = ["--address", address, "--namespace", namespace, "--output", "json"]
    out = subprocess.run(
        [require_tool("temporal"), "operator", *command, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _registered(address: str, namespace: str) -> dict[str, str]:
    return dict(_operator(address, namespace, "search-attribute", "list").get("customAttributes", {}))


def test_the_register_script_creates_the_namespace_and_search_attributes_once(temporal_address: str) -> None:
    namespace = f"register-{uuid.uuid4().hex[:8]}"
    first = _run_script(temporal_address, namespace)
    assert first.returncode == 0, first.stdout + first.stderr
    described = _operator(temporal_address, namespace, "namespace", "describe")
    retention = described["config"]["workflowExecutionRetentionTtl"]
    assert retention == f"{336 * 3600}s"
    registered = _registered(temporal_address, namespace)
    expected = {key.name: key.indexed_value_type.name for key in search_attributes.ALL}
    assert {
        name: registered.get(name, "").removeprefix("INDEXED_VALUE_TYPE_") for name in expected
    } == expected

    again = _run_script(temporal_address, namespace)
    assert again.returncode == 0, again.stdout + again.stderr
    for key in search_attributes.ALL:
        assert f"search attribute {key.name} already registered" in again.stderr + again.stdout
    assert _registered(temporal_address, namespace) == registered


def _schedule(address: str, namespace: str, *command: str) -> Any:
    flags = ["--address", address, "--namespace", namespace, "--schedule-id", housekeeping.SCHEDULE_ID]
    out = subprocess.run(
        [require_tool("temporal"), "schedule", *command, *flags, "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_the_register_script_creates_the_housekeeping_schedule_as_the_code_defines_it(
    temporal_address: str,
) -> None:
    namespace = f"register-{uuid.uuid4().hex[:8]}"
    first = _run_script(temporal_address, namespace)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"schedule {housekeeping.SCHEDULE_ID} created" in first.stdout
    described = _schedule(temporal_address, namespace, "describe")["schedule"]
    (interval,) = described["spec"]["interval"]
    assert interval["interval"] == f"{int(housekeeping.INTERVAL.total_seconds())}s"
    assert described["policies"]["overlapPolicy"] == "SCHEDULE_OVERLAP_POLICY_SKIP"
    action = described["action"]["startWorkflow"]
    assert action["workflowType"]["name"] == housekeeping.WORKFLOW_TYPE
    assert action["workflowId"] == housekeeping.WORKFLOW_ID
    container = register_container()
    prefix = {e["name"]: e["value"] for e in container["env"]}["SOSO_TASK_QUEUE_PREFIX"]
    assert action["taskQueue"]["name"] == task_queues.named(task_queues.ACCOUNTS, prefix)
    assert "SosoKind" in action["searchAttributes"]["indexedFields"]
    # No payload: the CLI has no codec, and the workers refuse a payload that is not encrypted.
    assert not action.get("input", {}).get("payloads")
    assert not described["state"].get("paused")

    # an operator pauses it; the next run of the Job updates it and leaves it paused
    subprocess.run(
        [
            require_tool("temporal"),
            "schedule",
            "toggle",
            "--address",
            temporal_address,
            "--namespace",
            namespace,
            "--schedule-id",
            housekeeping.SCHEDULE_ID,
            "--pause",
            "--reason",
            "test",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    again = _run_script(temporal_address, namespace)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"schedule {housekeeping.SCHEDULE_ID} updated" in again.stdout
    after = _schedule(temporal_address, namespace, "describe")["schedule"]
    assert after["state"]["paused"] is True
    assert {k: after[k] for k in ("spec", "action", "policies")} == {
        k: described[k] for k in ("spec", "action", "policies")
    }


async def test_the_register_script_creates_the_nudge_schedules_as_the_code_defines_them(
    temporal_address: str,
) -> None:
    namespace = f"register-{uuid.uuid4().hex[:8]}"
    first = _run_script(temporal_address, namespace)
    assert first.returncode == 0, first.stdout + first.stderr
    for schedule_id in nudges.SCHEDULE_IDS.values():
        assert f"schedule {schedule_id} created" in first.stdout
    container = register_container()
    prefix = {e["name"]: e["value"] for e in container["env"]}["SOSO_TASK_QUEUE_PREFIX"]
    settings = Settings(
        env="test",
        temporal_address=temporal_address,
        temporal_namespace=namespace,
        temporal_task_queue_prefix=prefix,
    )
    client = await connect(settings)
    made = {k: await client.get_schedule_handle(i).describe() for k, i in nudges.SCHEDULE_IDS.items()}
    # Ensuring them as the code defines them changes no spec, policy or action (neither gives an input:
    # the CLI's would be a plain payload, which the workers refuse).
    assert await nudges.ensure_schedules(client, settings) == {i: False for i in nudges.SCHEDULE_IDS.values()}
    for kind, schedule_id in nudges.SCHEDULE_IDS.items():
        after = await client.get_schedule_handle(schedule_id).describe()
        before = made[kind].schedule
        # The CLI sets no jitter as an explicit zero, the SDK as unset: the same.
        assert replace(after.schedule.spec, jitter=None) == replace(before.spec, jitter=None), kind
        assert after.schedule.policy == before.policy, kind
        old, new = before.action, after.schedule.action
        assert isinstance(old, ScheduleActionStartWorkflow) and isinstance(new, ScheduleActionStartWorkflow)
        assert (old.workflow, old.id, old.task_queue) == (new.workflow, new.id, new.task_queue), kind
        assert old.typed_search_attributes == new.typed_search_attributes, kind
        assert old.args == new.args == [], kind  # no payload, so nothing a worker could refuse
        assert new.task_queue == task_queues.named(task_queues.PUSH, prefix)
        assert before.spec.time_zone_name == "Asia/Seoul" and not before.state.paused
    again = _run_script(temporal_address, namespace)
    assert again.returncode == 0, again.stdout + again.stderr
    for schedule_id in nudges.SCHEDULE_IDS.values():
        assert f"schedule {schedule_id} updated" in again.stdout
