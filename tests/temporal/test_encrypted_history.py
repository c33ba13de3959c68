"""On the real dev server: a workflow's history holds only ciphertext (a client without the codec reads
nothing), the project's client reads it back, and the temporal CLI shows it decoded through the codec
server (``--codec-endpoint``/``--codec-auth``) and encrypted without it."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from temporal.codec import ENCODING
from temporal.devserver import cli_path
from tests.fixtures.codec import CodecServer
from tests.temporal.echo_workflow import EchoWorkflow, echo_activity, echo_after_a_failure


async def _echo(client: Client, *, fail_once: bool) -> tuple[str, str]:
    """(workflow id, the secret-looking text it carried) of one completed echo run."""
    secret = f"apple-refresh-token-{uuid.uuid4().hex}"
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(2) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[EchoWorkflow],
            activities=[echo_activity, echo_after_a_failure],
            activity_executor=executor,
        ):
            workflow_id = f"codec-echo-{uuid.uuid4().hex[:8]}"
            assert (
                await client.execute_workflow(
                    EchoWorkflow.run,
                    args=[secret, True] if fail_once else [secret],
                    id=workflow_id,
                    task_queue=queue,
                )
                == secret
            )
    return workflow_id, secret


@pytest.fixture(scope="module")
async def finished(temporal_client: Client) -> tuple[str, str]:
    """One completed echo run."""
    return await _echo(temporal_client, fail_once=False)


@pytest.fixture(scope="module")
async def retried(temporal_client: Client) -> tuple[str, str]:
    """One completed echo run whose activity failed once with an error quoting the secret."""
    return await _echo(temporal_client, fail_once=True)


async def test_the_history_holds_only_ciphertext(finished: tuple[str, str], temporal_address: str) -> None:
    workflow_id, secret = finished
    plain = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert secret.encode() not in raw and base64.b64encode(secret.encode()) not in raw
    assert secret not in history.to_json()
    # Input, activity input and result, workflow result: every payload of the run is encrypted.
    payloads = [
        p
        for e in history.events
        for p in (
            *e.workflow_execution_started_event_attributes.input.payloads,
            *e.activity_task_scheduled_event_attributes.input.payloads,
            *e.activity_task_completed_event_attributes.result.payloads,
            *e.workflow_execution_completed_event_attributes.result.payloads,
        )
    ]
    assert len(payloads) == 4 and {p.metadata["encoding"] for p in payloads} == {ENCODING}
    with pytest.raises(Exception, match="encoding"):
        await plain.get_workflow_handle(workflow_id, result_type=str).result()


async def test_the_projects_client_reads_it_back(finished: tuple[str, str], temporal_client: Client) -> None:
    workflow_id, secret = finished
    assert await temporal_client.get_workflow_handle(workflow_id, result_type=str).result() == secret


def cli_show(temporal_address: str, workflow_id: str, *codec: str) -> str:
    done = subprocess.run(
        [
            cli_path(),
            "workflow",
            "show",
            "--address",
            temporal_address,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
            *codec,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_cli_shows_it_decoded_only_through_the_codec_server(
    finished: tuple[str, str], temporal_address: str, codec_server: CodecServer
) -> None:
    workflow_id, secret = finished
    codec = ["--codec-endpoint", codec_server.url, "--codec-auth", f"Bearer {codec_server.token}"]
    shown = base64.b64encode(f'"{secret}"'.encode()).decode()  # JSON output: payload data in base64
    decoded = await asyncio.to_thread(cli_show, temporal_address, workflow_id, *codec)
    assert decoded.count(shown) == 4  # input, activity input and result, workflow result
    encrypted = await asyncio.to_thread(cli_show, temporal_address, workflow_id)
    assert shown not in encrypted and secret not in encrypted
    assert base64.b64encode(ENCODING).decode() in encrypted


async def test_a_failures_message_is_encrypted_too(
    retried: tuple[str, str], temporal_address: str, temporal_client: Client, codec_server: CodecServer
) -> None:
    workflow_id, secret = retried
    plain = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    assert secret.encode() not in raw and base64.b64encode(secret.encode()) not in raw
    [started] = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
    ]
    failure = started.last_failure
    assert started.attempt == 2 and failure.message == "Encoded failure" and not failure.stack_trace
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    # The project's client, and the CLI through the codec server, read the message back.
    cause = await temporal_client.data_converter.decode_failure(failure)
    assert isinstance(cause, ApplicationError) and cause.message == f"could not store {secret}"
    codec = ["--codec-endpoint", codec_server.url, "--codec-auth", f"Bearer {codec_server.token}"]
    decoded = await asyncio.to_thread(cli_show, temporal_address, workflow_id, *codec)
    # The failure's attributes, decoded: a JSON payload (base64 in the JSON output) opening with the message.
    opening = f'{{"message":"could not store {secret}"'.encode()
    shown = base64.b64encode(opening[: len(opening) // 3 * 3]).decode()
    assert shown in decoded
    encrypted = await asyncio.to_thread(cli_show, temporal_address, workflow_id)
    assert shown not in encrypted and secret not in encrypted
