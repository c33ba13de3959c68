"""The README's Temporal runbook commands, as written, hold to the code and work.

Static checks read every local ``temporal`` command of the README's ``sh`` blocks (``tests.readme_commands``):
what sends a payload goes through the codec server, what reads a run decodes through it, what starts a
workflow by hand gives it the id, queue and search attributes the services give it, and every query,
workflow id and schedule id names something the code defines. The last test runs the resign runbook as
written (ids and the codec server's address put in) against the test stack's Temporal server, codec
server and real worker: a hand-started resign stalled on Apple is listed by the runbook's queries, its
pending step and decoded failure shown by ``describe``, its decoded history by ``show``, and ``reset``
re-runs it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes

from activities.deps import ActivityDeps
from api import outbox
from config import Settings
from emulators.control import AppleEmulator
from storage import users
from temporal import housekeeping, nudges, task_queues
from temporal import search_attributes as sa
from temporal.accounts import NicknameChange, ResignInput, ResignResult
from temporal.ids import (
    dm_push_workflow_id,
    like_push_workflow_id,
    monthly_push_workflow_id,
    nickname_change_workflow_id,
    reminder_push_workflow_id,
    resign_workflow_id,
)
from tests.fixtures.codec import CodecServer
from tests.fixtures.waiting import eventually
from tests.readme_commands import (
    CODEC_AUTH,
    CODEC_ENDPOINT,
    Command,
    commands,
    in_section,
    inline_spans,
    local_temporal_commands,
)
from workers.registry import ALL_WORKFLOWS

TEMPORAL_CLI = Path(sys.executable).with_name("temporal")

#: Flags that put a payload into Temporal (the CLI's input, signal, memo and update flags).
PAYLOAD_FLAGS = (
    "--input",
    "-i",
    "--input-file",
    "--signal-input",
    "--signal-input-file",
    "--memo",
    "--memo-file",
)
#: The kinds (``SosoKind``) the services give their runs.
KINDS = {
    "sign-in",
    "resign",
    "nickname-change",
    housekeeping.KIND,
    *nudges.KINDS.values(),
    "push-like",
    "push-dm",
}
SCHEDULES = {housekeeping.SCHEDULE_ID, nudges.REMINDER_SCHEDULE_ID, nudges.MONTHLY_SCHEDULE_ID}
RUNBOOK_SECTIONS = {
    "Nickname normalisation (migration 0007)",
    "Resign runbook",
    "Housekeeping",
    "Gentle nudges",
    "Temporal: Web UI and CLI",
    "Push delivery runbook",
}


def _id_pattern(example: str, *numbers: int) -> str:
    """A regex of the ids ``example`` stands for: each of ``numbers`` in it may be any decimal id."""
    pattern = re.escape(example)
    for number in numbers:
        pattern = pattern.replace(str(number), r"\d+")
    return pattern


#: The workflow ids the code gives (temporal/ids.py; schedule runs are ``<schedule id>-<start time>``).
WORKFLOW_IDS = [
    r"sign-in:.+",
    _id_pattern(resign_workflow_id(910001), 910001),
    _id_pattern(nickname_change_workflow_id(910001), 910001),
    _id_pattern(like_push_workflow_id(910001, 910002), 910001, 910002),
    _id_pattern(dm_push_workflow_id(910002, 910001), 910001, 910002),
    _id_pattern(reminder_push_workflow_id(910001, 20261224), 910001, 20261224),
    _id_pattern(monthly_push_workflow_id(910001, 202612), 910001, 202612),
    *(rf"{re.escape(s)}-\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ" for s in SCHEDULES),
    r"<id>",
]


def _search_attributes(command: Command) -> dict[str, Any]:
    """``--search-attribute 'Name=<json>'`` flags as name -> value."""
    found = {}
    for flag in command.values("--search-attribute"):
        name, _, raw = flag.partition("=")
        found[name] = json.loads(raw)
    return found


def test_the_readme_runbooks_are_found() -> None:
    found = local_temporal_commands()
    assert {c.section for c in found} >= RUNBOOK_SECTIONS
    assert len(found) >= 30


def test_every_command_that_writes_a_payload_goes_through_the_codec_server() -> None:
    """Workers refuse a plain payload (``PayloadNotEncrypted``): a README command that sends one without
    the codec flags would start a run that fails before its first step."""
    writers = [c for c in local_temporal_commands() if c.has(*PAYLOAD_FLAGS)]
    assert {c.subcommand for c in writers} >= {("workflow", "start"), ("workflow", "signal-with-start")}
    for command in writers:
        assert command.value("--codec-endpoint") == CODEC_ENDPOINT, command
        assert command.value("--codec-auth") == CODEC_AUTH, command


def test_every_read_of_a_run_decodes_through_the_codec_server() -> None:
    """``describe`` and ``show`` are how the runbooks say why a run retries or failed: every failure and
    payload is encrypted, so without the codec they show ``Encoded failure`` and ciphertext. ``show``'s
    table view decodes only the result: the runbooks ask for every event (``--detailed``) or JSON."""
    readers = [
        c
        for c in commands()
        if "temporal" in (Path(w).name for w in c.argv)
        and any(
            c.argv[i : i + 2] in (("workflow", "show"), ("workflow", "describe")) for i in range(len(c.argv))
        )
    ]
    assert len(readers) >= 8
    for command in readers:
        assert command.has("--codec-endpoint") and command.has("--codec-auth"), command
        if command.argv[0] == ".venv/bin/temporal":
            assert command.value("--codec-endpoint") == CODEC_ENDPOINT, command
            assert command.value("--codec-auth") == CODEC_AUTH, command
        if "show" in command.argv:
            assert command.has("--detailed") or command.value("--output") == "json", command
    # Commands in the prose that name a run to read carry the flags too.
    spans = [s for s in inline_spans() if re.match(r"temporal workflow (show|describe) .*--workflow-id", s)]
    assert spans
    for span in spans:
        assert "--codec-endpoint" in span and "--codec-auth" in span, span


class _Recorder:
    """Stands for the Temporal client: records the start a service makes."""

    def __init__(self) -> None:
        self.starts: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    async def start_workflow(self, run: Any, *args: Any, **kwargs: Any) -> None:
        self.starts.append((run, args, kwargs))


def _service_start(kind: str, user_id: int) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """(workflow type, arguments, options) of the start the API makes for ``kind`` of ``user_id``."""
    recorder = _Recorder()
    if kind == "ResignWorkflow":
        payload = ResignInput(user_id=user_id, provider="kakao").model_dump_json()
        asyncio.run(outbox._start_resign(recorder, payload))  # type: ignore[arg-type]
    else:
        payload = NicknameChange(user_id=user_id, old="a", new="b").model_dump_json()
        asyncio.run(outbox._start_rename(recorder, payload))  # type: ignore[arg-type]
    [(run, args, options)] = recorder.starts
    return run if isinstance(run, str) else run.__qualname__.split(".")[0], args, options


def test_a_workflow_started_by_hand_is_the_one_the_services_start() -> None:
    """Same type, id, task queue and search attributes as the API's start, so the runbooks' queries, the
    dashboards' links and the alerts find it (a resign started without ``SosoKind``/``SosoUserId`` was
    listed by none of them); its input is what the workflow takes."""
    starts = [
        c
        for c in local_temporal_commands()
        if c.subcommand in (("workflow", "start"), ("workflow", "signal-with-start"))
    ]
    assert {c.value("--type") for c in starts} == {"ResignWorkflow", "NicknameChangeWorkflow"}
    for command in starts:
        workflow_id = (command.value("--workflow-id") or "").replace("<user_id>", "42")
        user_id = int(workflow_id.rpartition(":")[2])
        type_name, args, options = _service_start(command.value("--type") or "", user_id)
        assert command.value("--type") == type_name, command
        assert workflow_id == options["id"], command
        assert command.value("--task-queue") == options["task_queue"], command
        attributes = options["search_attributes"]
        assert isinstance(attributes, TypedSearchAttributes)
        expected = {pair.key.name: pair.value for pair in attributes}
        given = {k: str(v).replace("<user_id>", "42") for k, v in _search_attributes(command).items()}
        assert given == expected, command
        if command.subcommand == ("workflow", "start"):
            [sent] = args
            assert ResignInput.model_validate_json(command.value("--input") or "") == sent, command
        else:
            assert command.value("--signal-name") == options["start_signal"], command


def test_queries_ids_and_schedules_name_what_the_code_defines() -> None:
    names = {key.name for key in sa.ALL}
    workflow_types = {cls.__name__ for cls in ALL_WORKFLOWS}
    queries = [q for c in local_temporal_commands() for q in c.values("--query")]
    assert len(queries) >= 12
    for query in queries:
        assert set(re.findall(r"\bSoso\w+", query)) <= names, query
        for kind in re.findall(r'SosoKind\s*=\s*"([^"]+)"', query):
            assert kind in KINDS, query
        for prefix in re.findall(r'SosoKind STARTS_WITH "([^"]+)"', query):
            assert any(k.startswith(prefix) for k in KINDS), query
        for workflow_id in re.findall(r'WorkflowId\s*=\s*"([^"]+)"', query):
            assert any(re.fullmatch(p, workflow_id) for p in WORKFLOW_IDS), query
        for workflow_type in re.findall(r'WorkflowType\s*=\s*"([^"]+)"', query):
            assert workflow_type in workflow_types, query
    assert 'WorkflowId="' + dm_push_workflow_id(42, 7) + '"' in " ".join(queries)
    for command in local_temporal_commands():
        if (schedule := command.value("--schedule-id")) is not None:
            assert schedule in SCHEDULES, command
        if (workflow_id := command.value("--workflow-id")) is not None:
            workflow_id = workflow_id.replace("<user_id>", "42")
            assert any(re.fullmatch(p, workflow_id) for p in WORKFLOW_IDS), command
        if (queue := command.value("--task-queue")) is not None:
            assert queue in task_queues.ALL, command
        if command.subcommand == ("workflow", "reset"):
            assert command.value("--type") == "FirstWorkflowTask" and command.value("--reason"), command


def _localised(command: Command, settings: Settings, codec: CodecServer, user_id: int) -> list[str]:
    """``command`` as an operator runs it on the test stack: its example user 42 is ``user_id``, the
    codec flags name the test's codec server, and the address and namespace are the test server's."""
    words = []
    for word in command.argv[1:]:
        word = re.sub(r"\b42\b", str(user_id), word)
        word = word.replace(CODEC_AUTH, f"Bearer {codec.token}").replace(CODEC_ENDPOINT, codec.url)
        words.append(word)
    return [
        str(TEMPORAL_CLI),
        *words,
        "--address",
        settings.temporal_address,
        "--namespace",
        settings.temporal_namespace,
    ]


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.usefixtures("worker")
async def test_the_resign_runbook_as_written_finds_explains_and_re_runs_a_stalled_resign(
    settings: Settings,
    activity_deps: ActivityDeps,
    apple_emulator: AppleEmulator,
    codec_server: CodecServer,
    temporal_client: Client,
) -> None:
    assert settings.temporal_task_queue_prefix == task_queues.DEFAULT_PREFIX  # the README's queue names
    with activity_deps.sessions.begin() as s:
        tag = uuid.uuid4().hex[:8]
        user_id = users.upsert_account(s, f"{tag}@icloud.com+apple", "apple", tag, f"apple-rt-{tag}").id
    workflow_id = resign_workflow_id(user_id)
    apple_emulator.fail("revoke", 503)  # Apple is down: the resign retries its Apple step

    # Started by hand as the Temporal section says (an Apple user's input), through the codec server.
    [start] = in_section("Temporal: Web UI and CLI", ("workflow", "start"))
    argv = _localised(start, settings, codec_server, user_id)
    argv = [w.replace('"provider": "kakao"', '"provider": "apple"') for w in argv]
    _run(argv)

    [stuck, by_user, _refused] = in_section("Resign runbook", ("workflow", "list"))
    [describe] = in_section("Resign runbook", ("workflow", "describe"))
    [show] = in_section("Resign runbook", ("workflow", "show"))
    [reset] = in_section("Resign runbook", ("workflow", "reset"))

    for query in (stuck, by_user):

        async def listed(q: Command = query) -> bool:
            return workflow_id in _run(_localised(q, settings, codec_server, user_id))

        await eventually(listed, f"{query} listing {workflow_id}")

    async def explained() -> str:
        out = _run(_localised(describe, settings, codec_server, user_id))
        return out if "/auth/revoke: HTTP 503" in out else ""

    # Which step is retrying, and why, decoded (the raw failure is ciphertext).
    out = await eventually(explained, "describe showing the Apple step's decoded failure")
    assert "resign_revoke_apple_of_user" in out and "Pending Activities: 1" in out

    apple_emulator.reset()  # Apple is back: the resign continues by itself
    handle = temporal_client.get_workflow_handle(workflow_id, result_type=ResignResult)
    first = await asyncio.wait_for(handle.result(), timeout=300)
    assert first.apple == "revoked"

    history = _run(_localised(show, settings, codec_server, user_id))
    assert f"input[0].user_id: {user_id}" in history and "input[0].provider: apple" in history
    assert "lastFailure.encodedAttributes.message: /auth/revoke: HTTP 503" in history

    first_run = (await handle.describe()).run_id
    _run(_localised(reset, settings, codec_server, user_id))

    async def re_run() -> bool:
        latest = await temporal_client.get_workflow_handle(workflow_id).describe()
        return latest.run_id != first_run and latest.status == WorkflowExecutionStatus.COMPLETED

    await eventually(re_run, "the reset run completing")
    again = await temporal_client.get_workflow_handle(workflow_id, result_type=ResignResult).result()
    assert again.apple == "not-apple"  # the refresh token went with the account row
