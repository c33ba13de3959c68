"""Payloads that are not encrypted, sent to the real worker by a client without the codec (anyone who
reaches the Temporal frontend, or ``temporal workflow start --input`` without ``--codec-endpoint``), are
refused before any workflow code runs on them: the run fails with ``PayloadNotEncrypted`` and does
nothing. The same request through the project's client (encrypted) runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from config import Settings
from storage.models import DeviceRegistration, User
from temporal import task_queues
from temporal.accounts import ResignInput, ResignResult
from temporal.codec import NOT_ENCRYPTED
from temporal.ids import nickname_change_workflow_id, resign_workflow_id
from tests.workflows.push_helpers import named_user, user_with_devices
from workflows.nickname import NicknameChangeWorkflow
from workflows.resign import ResignWorkflow

pytestmark = pytest.mark.usefixtures("worker")


@pytest_asyncio.fixture
async def keyless(settings: Settings) -> AsyncIterator[Client]:
    """A client of the session's Temporal server that sends payloads as they are (no codec, no key)."""
    yield await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )


def _queue(settings: Settings) -> str:
    return task_queues.named(task_queues.ACCOUNTS, settings.temporal_task_queue_prefix)


async def _refused(temporal_client: Client, handle: WorkflowHandle) -> None:
    """The run failed with ``PayloadNotEncrypted`` (read through the project's client) and scheduled no
    step at all."""
    with pytest.raises(WorkflowFailureError) as info:
        await temporal_client.get_workflow_handle(handle.id, run_id=handle.result_run_id).result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    assert (cause.type, cause.non_retryable) == (NOT_ENCRYPTED, True)
    assert "payload is not encrypted (encoding 'json/plain')" in cause.message
    history = await temporal_client.get_workflow_handle(
        handle.id, run_id=handle.result_run_id
    ).fetch_history()
    kinds = {e.event_type for e in history.events}
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds
    assert EventType.EVENT_TYPE_MARKER_RECORDED not in kinds  # no local activity either


def _account_and_devices(deps: ActivityDeps, user_id: int) -> tuple[int, int]:
    with deps.sessions() as s:
        users = len(s.scalars(select(User.id).where(User.id == user_id)).all())
        devices = len(
            s.scalars(select(DeviceRegistration.id).where(DeviceRegistration.user_id == user_id)).all()
        )
    return users, devices


async def test_a_resign_started_with_a_plain_input_does_nothing_and_the_encrypted_one_runs(
    settings: Settings, keyless: Client, temporal_client: Client, activity_deps: ActivityDeps
) -> None:
    user_id, _ = user_with_devices(activity_deps, 1, f"p{uuid.uuid4().hex[:8]}")
    assert _account_and_devices(activity_deps, user_id) == (1, 1)
    workflow_id = resign_workflow_id(user_id)

    plain = await keyless.start_workflow(
        "ResignWorkflow",
        {"user_id": user_id, "provider": "kakao"},
        id=workflow_id,
        task_queue=_queue(settings),
    )
    await _refused(temporal_client, plain)
    assert _account_and_devices(activity_deps, user_id) == (1, 1)  # nothing was deleted

    sealed = await temporal_client.start_workflow(
        ResignWorkflow.run,
        ResignInput(user_id=user_id, provider="kakao"),
        id=workflow_id,
        task_queue=_queue(settings),
    )
    result = await sealed.result()
    assert isinstance(result, ResignResult) and result.devices_removed == 1
    assert _account_and_devices(activity_deps, user_id) == (0, 0)


async def test_a_plain_signal_is_refused_before_the_workflow_acts_on_it(
    settings: Settings, keyless: Client, temporal_client: Client, activity_deps: ActivityDeps
) -> None:
    """The README's rename runbook without its codec flags: the signal's payload is plain."""
    user_id, nickname = named_user(activity_deps, "q")
    change = {"user_id": user_id, "old": nickname, "new": nickname + "2", "change_id": None}
    handle = await keyless.start_workflow(
        "NicknameChangeWorkflow",
        id=nickname_change_workflow_id(user_id),
        task_queue=_queue(settings),
        start_signal="rename",
        start_signal_args=[change],
    )
    await _refused(temporal_client, handle)
    # Through the project's client the same rename is applied.
    sealed = await temporal_client.start_workflow(
        NicknameChangeWorkflow.run,
        id=nickname_change_workflow_id(user_id),
        task_queue=_queue(settings),
        start_signal="rename",
        start_signal_args=[change],
    )
    assert await sealed.result() == [f"{nickname}->{nickname}2"]
