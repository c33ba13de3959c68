"""``make run`` (``python -m devstack.run``) as a user runs it: comes up ready, stops cleanly, fails clearly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import WorkflowExecutionStatus

from config import Settings
from config.settings import parse_payload_keys
from devstack.processes import ManagedProcess
from devstack.run import STOP_SIGNALS, Stack, Stopped
from temporal.accounts import SignInResult
from temporal.client import connect
from temporal.codec import EncryptionCodec, local_key_file
from temporal.ids import sign_in_workflow_id
from tests.fixtures.devstack import (
    read_until,
    read_until_ready,
    stack_env,
    start_ready_stack,
    start_stack,
    stop_stack,
)
from tests.fixtures.ios_client import IOSClient, code_verifier

StackRunner = Callable[[dict[str, str]], subprocess.Popen[str]]
ReadyStack = Callable[[Path], tuple[subprocess.Popen[str], dict[str, str], str]]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _processes_of(data_dir: Path) -> list[int]:
    """The live processes of the stack keeping its state in ``data_dir``: every child inherits its
    ``SOSOHAPPY_DATA_DIR``, and one that outlived the stack is no longer its descendant."""
    marker = f"SOSOHAPPY_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture
def stopped_after() -> Iterator[list[subprocess.Popen[str]]]:
    """The stacks a test started, each stopped when it ends."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        stop_stack(proc, timeout=60)


@pytest.fixture
def run_stack(stopped_after: list[subprocess.Popen[str]]) -> StackRunner:
    def start(env: dict[str, str]) -> subprocess.Popen[str]:
        stopped_after.append(start_stack(env))
        return stopped_after[-1]

    return start


@pytest.fixture
def ready_stack(stopped_after: list[subprocess.Popen[str]]) -> ReadyStack:
    """A stack on free ports, started again on others if one was taken meanwhile (``start_ready_stack``)."""

    def start(data_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str], str]:
        proc, env, output = start_ready_stack(data_dir)
        stopped_after.append(proc)
        return proc, env, output

    return start


def _codec_server_serves_the_ui(env: dict[str, str], output: str, data: Path) -> None:
    """The Web UI decodes through the codec server (its origin, no token, this machine); anything else
    needs the generated token; the generated key is the one the stack's processes encrypt with."""
    codec = f"http://127.0.0.1:{env['SOSOHAPPY_CODEC_SERVER_PORT']}"
    ui = f"http://127.0.0.1:{env['SOSOHAPPY_TEMPORAL_UI_PORT']}"
    assert f"codec server      {codec}" in output and "--codec-auth" in output
    # The decoded history it prints is every event's (the table view decodes the result only).
    assert re.search(r"decoded history   \S+ workflow show .*--detailed --codec-endpoint", output)
    assert httpx.get(f"{ui}/api/v1/settings", timeout=10).json()["Codec"]["Endpoint"] == codec
    keys = parse_payload_keys((data / "temporal-payload-keys").read_text().strip())
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    sealed = asyncio.run(EncryptionCodec(keys).encode([original]))
    body = json_format.MessageToJson(Payloads(payloads=sealed))
    decoded = httpx.post(f"{codec}/decode", content=body, headers={"Origin": ui}, timeout=10)
    assert decoded.status_code == 200 and decoded.headers["access-control-allow-origin"] == ui
    assert list(json_format.Parse(decoded.text, Payloads()).payloads) == [original]
    assert httpx.post(f"{codec}/decode", content=body, timeout=10).status_code == 401
    token = (data / "codec-server-token").read_text().strip()
    authorised = httpx.post(f"{codec}/decode", content=body, headers={"Authorization": f"Bearer {token}"})
    assert authorised.status_code == 200


@pytest.mark.slow
def test_stack_comes_up_ready_and_ctrl_c_leaves_no_process(ready_stack: ReadyStack, tmp_path: Path) -> None:
    proc, env, output = ready_stack(tmp_path / "data")
    assert "Press Ctrl-C" in output, output
    api = f"http://127.0.0.1:{env['SOSOHAPPY_API_PORT']}"
    assert f"Temporal Web UI   http://127.0.0.1:{env['SOSOHAPPY_TEMPORAL_UI_PORT']}" in output
    assert httpx.get(f"{api}/readyz", timeout=10).status_code == 200
    assert httpx.get(f"{api}/", timeout=10).text == "sosohappy don't operate a website.\n"
    api_metrics = f"http://127.0.0.1:{env['SOSOHAPPY_API_METRICS_PORT']}/metrics"
    assert f"metrics {api_metrics}" in output
    assert (
        'sosohappy_http_requests_total{method="GET",route="/readyz",status="200"}'
        in httpx.get(api_metrics).text
    )
    assert httpx.get(f"{api}/docs", timeout=10).status_code == 200  # make run is local: docs are served
    assert httpx.get(f"http://127.0.0.1:{env['SOSOHAPPY_TEMPORAL_UI_PORT']}/", timeout=10).status_code == 200
    worker = f"http://127.0.0.1:{env['SOSOHAPPY_WORKER_METRICS_PORT']}"
    worker_metrics = httpx.get(f"{worker}/metrics", timeout=10)
    assert "sosohappy_push_sent_total" in worker_metrics.text
    assert "sosohappy_activity_attempts_total" in worker_metrics.text
    assert httpx.get(f"{worker}/healthz", timeout=10).json()["status"] == "ok"
    ready = httpx.get(f"{worker}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["workers"] == {
        "sosohappy-accounts": "polling",
        "sosohappy-push": "polling",
        "sosohappy-sign-in": "polling",
    }
    sdk = httpx.get(f"http://127.0.0.1:{env['SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT']}/metrics", timeout=10)
    # Before any workflow runs, the SDK already reports its pollers and free task slots per queue.
    assert 'temporal_num_pollers{namespace="default",poller_type="activity_task"' in sdk.text
    assert 'temporal_worker_task_slots_available{namespace="default"' in sdk.text
    assert 'task_queue="sosohappy-push"' in sdk.text
    assert "✓ schedule housekeeping created (hourly; Web UI → Schedules)" in output
    assert "✓ schedule nudge-reminder created (daily 21:00 KST; Web UI → Schedules)" in output
    assert "✓ schedule nudge-monthly created (the 1st, 09:00 KST; Web UI → Schedules)" in output

    # Every line the API and the worker wrote is one JSON object; the API logged its /readyz calls.
    logs = tmp_path / "data" / "logs"
    api_lines = [json.loads(line) for line in (logs / "api.log").read_text().splitlines() if line]
    worker_lines = [json.loads(line) for line in (logs / "worker.log").read_text().splitlines() if line]
    assert any(line.get("event") == "http_request" and line["route"] == "/readyz" for line in api_lines)
    assert any(line["logger"] == "uvicorn.error" for line in api_lines)  # uvicorn's own lines too
    assert any(line["msg"].startswith("worker polling") for line in worker_lines)

    _codec_server_serves_the_ui(env, output, tmp_path / "data")

    children = _descendants(proc.pid)
    assert len(children) >= 8, children  # codec server, temporal, kafka, mongo, 2 emulators, worker, api
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, rest
    assert "stopped." in rest
    assert [pid for pid in children if _alive(pid)] == []
    assert (tmp_path / "data" / "temporal" / "temporal.db").exists()  # state kept for the next start


@pytest.mark.slow
async def test_workflows_survive_a_stop_and_start_of_the_stack(
    run_stack: StackRunner, ready_stack: ReadyStack, tmp_path: Path
) -> None:
    state = tmp_path / "data" / "temporal" / "temporal.db"
    proc, env, output = ready_stack(tmp_path / "data")
    assert "Press Ctrl-C" in output
    assert state.with_name("temporal.db-wal").exists()  # the tuned pragmas are in effect (WAL)
    with httpx.Client(base_url=f"http://127.0.0.1:{env['SOSOHAPPY_API_PORT']}", timeout=60) as http:
        app, verifier = IOSClient(http), code_verifier()
        code = app.authorize_code(verifier)
        assert app.present_code(code, verifier, "restart@gmail.com").status_code == 200
    settings = Settings(
        env="test",
        temporal_address=f"127.0.0.1:{env['SOSOHAPPY_TEMPORAL_PORT']}",
        # The stack's own generated keyring (its histories are encrypted with it).
        temporal_payload_keys=local_key_file(tmp_path / "data").read_text().strip(),  # type: ignore[arg-type]
    )
    before = await (await connect(settings)).get_workflow_handle(sign_in_workflow_id(code)).fetch_history()
    assert "stopped." in stop_stack(proc)

    proc = run_stack(env)  # same data directory and ports
    assert "Press Ctrl-C" in read_until_ready(proc)
    client = await connect(settings)
    handle = client.get_workflow_handle(sign_in_workflow_id(code), result_type=SignInResult)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    result = await handle.result()
    assert result.status == "ok" and result.user_id > 0
    assert (await handle.fetch_history()).events == before.events


def test_unreachable_database_fails_fast_naming_the_setting(run_stack: StackRunner, tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data", SOSOHAPPY_DATABASE_URL="mysql+pymysql://root@127.0.0.1:1/nowhere")
    out, _ = run_stack(env).communicate(timeout=120)  # it exits by itself; the deadline only bounds a hang
    assert "SOSOHAPPY_DATABASE_URL" in out and "unreachable" in out, out
    assert "Press Ctrl-C" not in out


def test_a_taken_port_is_named_and_nothing_is_left_running(run_stack: StackRunner, tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    taken = int(env["SOSOHAPPY_KAFKA_PORT"])
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        proc = run_stack(env)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"Kafka broker (Tansu): port 127.0.0.1:{taken} is already in use" in out, out
    assert "SOSOHAPPY_KAFKA_PORT" in out
    assert "stopping Temporal dev server" in out


def test_sighup_stops_the_stack_and_every_child(run_stack: StackRunner, tmp_path: Path) -> None:
    """Closing the terminal (or losing the SSH session) hangs up ``make run``; the servers run in sessions
    of their own, so only the supervisor can stop them."""
    data = tmp_path / "data"
    proc = run_stack(stack_env(data))
    out = read_until(proc, "✓ codec server ready", 60)
    assert "✓ codec server ready" in out, out
    assert _processes_of(data), "the codec server is not running"
    proc.send_signal(signal.SIGHUP)  # it is starting the next server: a child being spawned is stopped too
    rest, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out + rest
    assert "SIGHUP: stopping…" in rest and "stopped." in rest, rest
    assert _processes_of(data) == []


def test_sighup_with_the_terminal_gone_still_stops_every_child(tmp_path: Path) -> None:
    """The hang-up of a closed terminal: the stack's output goes nowhere (writes fail), stopping goes on."""
    data = tmp_path / "data"
    proc = start_stack(stack_env(data))
    try:
        out = read_until(proc, "✓ codec server ready", 60)
        assert "✓ codec server ready" in out, out
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone: every later line the stack writes fails
        proc.stdout = None
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=90) == 0
        assert _processes_of(data) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stop_signal_while_a_child_is_spawned_waits_until_it_is_recorded(tmp_path: Path) -> None:
    """The signal handler raises wherever the supervisor is, except between a child's fork and its
    recording, where it would leave that child out of ``Stack.stop``."""
    stack = Stack(tmp_path, [])

    class HungUpWhileStarting(ManagedProcess):
        def start(self) -> ManagedProcess:
            stack.on_signal(signal.SIGHUP, None)  # arrives in the middle of the start
            return self

    child = HungUpWhileStarting("server", ["true"], tmp_path / "server.log")
    with pytest.raises(Stopped, match="SIGHUP"):
        stack.spawn(child)
    assert stack.children == [child]
    with pytest.raises(Stopped, match="SIGTERM"):  # outside a spawn: at once
        stack.on_signal(signal.SIGTERM, None)
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
