"""PushDeliveryWorkflow on the real dev server and worker, delivering to the FCM emulator."""

from __future__ import annotations

import random

import pytest
from prometheus_client import REGISTRY
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, FailureError

from activities.deps import ActivityDeps
from api.push import request_push
from emulators.control import FcmEmulator
from temporal.push import PushOutcome, PushRequest, like_push
from tests.workflows.push_helpers import (
    device_ids_by_token,
    liked_entry,
    liked_push,
    tokens_of,
    user_with_devices,
)
from tests.workflows.recording import record_if_asked

pytestmark = pytest.mark.usefixtures("worker")


async def _deliver(client: Client, req: PushRequest) -> PushOutcome:
    await request_push(client, req)
    return await client.get_workflow_handle(req.workflow_id, result_type=PushOutcome).result()


async def _activity_attempts(client: Client, workflow_id: str) -> list[tuple[int, str]]:
    """(attempt, last failure) of each started activity, as the history records them."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = [
        e.activity_task_started_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return [(a.attempt, await _message(client, a.last_failure)) for a in started]


async def _local_attempts(client: Client, workflow_id: str) -> list[str]:
    """The failure message of each recorded local activity ("" when it succeeded), in order."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return [
        await _message(client, e.marker_recorded_event_attributes.failure)
        if e.marker_recorded_event_attributes.HasField("failure")
        else ""
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


async def _message(client: Client, failure: Failure) -> str:
    """A failure's message as the project's client reads it (the codec encrypts it in the history)."""
    if not failure.message:
        return ""
    cause = await client.data_converter.decode_failure(failure)
    return cause.message if isinstance(cause, FailureError) else str(cause)


async def test_like_push_reaches_every_device_with_the_original_payload(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner_nickname = f"소소{random.randrange(10**6)}"
    owner, tokens = user_with_devices(activity_deps, 2, owner_nickname)
    feed_id, liker, liker_nickname = liked_entry(activity_deps, owner)
    req = like_push(feed_id, liker, owner, 2024012017042712)
    outcome = await _deliver(temporal_client, req)
    ids = device_ids_by_token(activity_deps, owner)
    assert sorted(outcome.sent) == sorted(ids[t] for t in tokens)
    for token in tokens:
        [msg] = fcm_emulator.messages(token)
        assert msg["message"]["notification"] == {
            "title": "소소해피",
            "body": f"{liker_nickname}님이 {owner_nickname}님의 행복을 응원합니다🩷",
        }
        assert msg["message"]["data"] == {"date": "2024012017042712"}
        # Sent twice (at-least-once), the like's notices replace each other on the device.
        assert msg["message"]["apns"] == {"headers": {"apns-collapse-id": f"like-{feed_id}-{liker}"}}
        assert msg["message"]["android"] == {"notification": {"tag": f"like-{feed_id}-{liker}"}}
    desc = await temporal_client.get_workflow_handle(req.workflow_id).describe()
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes if p.key.name.startswith("Soso")}
    assert attrs == {"SosoUserId": str(owner), "SosoKind": "push-like", "SosoOutcome": "sent"}
    # Sent on the first attempt: a local activity, no activity task for the server.
    assert await _activity_attempts(temporal_client, req.workflow_id) == []
    assert await _local_attempts(temporal_client, req.workflow_id) == ["", "", ""]
    await record_if_asked(
        temporal_client.get_workflow_handle(req.workflow_id), "push_delivery_like_local_first"
    )


async def test_transient_failures_are_retried_until_sent(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1, f"jin{random.randrange(10**6)}")
    # firebase-admin does not retry a 500 itself (activities.firebase), so each failure is a Temporal
    # retry, one second apart (a QUOTA_EXCEEDED waits a minute: test_push_deadline.py).
    fcm_emulator.fail(token, "INTERNAL", times=2)
    feed_id, liker, liker_nickname = liked_entry(activity_deps, owner)
    req = like_push(feed_id, liker, owner, 2024012017042712)
    outcome = await _deliver(temporal_client, req)
    assert outcome.sent == [device_ids_by_token(activity_deps, owner)[token]]
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["INTERNAL", "INTERNAL", "accepted"]
    # The first attempt ran as a local activity (its failure is in its marker, after the device
    # lookup's); the retries as a regular activity, whose attempts count on from it.
    assert await _local_attempts(temporal_client, req.workflow_id) == ["", "FCM INTERNAL"]
    [(attempt, last_failure)] = await _activity_attempts(temporal_client, req.workflow_id)
    assert attempt == 2 and last_failure == "FCM INTERNAL"  # the code only: no token, no text
    await record_if_asked(
        temporal_client.get_workflow_handle(req.workflow_id), "push_delivery_local_then_retried"
    )
    [msg] = fcm_emulator.messages(token)
    assert msg["message"]["notification"]["body"].startswith(f"{liker_nickname}님이 jin")


async def test_a_slow_fcm_answer_is_waited_for_not_sent_again(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    # FCM answers the first send after 12 s: longer than the first attempt's old 10 s limit, within
    # the HTTP read timeout (20 s) and the attempt's limit now (65 s).
    fcm_emulator.delay(token, 12, times=1)
    req = liked_push(activity_deps, owner)
    outcome = await _deliver(temporal_client, req)
    assert outcome.sent == [device_ids_by_token(activity_deps, owner)[token]]
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["accepted"]  # one POST
    assert len(fcm_emulator.messages(token)) == 1
    assert await _local_attempts(temporal_client, req.workflow_id) == ["", ""]  # the local one sent it
    assert await _activity_attempts(temporal_client, req.workflow_id) == []


async def test_unregistered_token_is_removed_without_retry_and_others_still_served(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [dead, alive] = user_with_devices(activity_deps, 2)
    ids = device_ids_by_token(activity_deps, owner)
    fcm_emulator.fail(dead, "UNREGISTERED")
    req = liked_push(activity_deps, owner)
    outcome = await _deliver(temporal_client, req)
    assert (outcome.sent, outcome.removed) == ([ids[alive]], [ids[dead]])
    await record_if_asked(
        temporal_client.get_workflow_handle(req.workflow_id), "push_delivery_removal_by_device_id"
    )
    assert [a["outcome"] for a in fcm_emulator.attempts(dead)] == ["UNREGISTERED"]
    assert tokens_of(activity_deps, owner) == [alive]
    assert len(fcm_emulator.messages(alive)) == 1


async def test_only_dead_tokens_complete_with_token_removed(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [dead] = user_with_devices(activity_deps, 1)
    ids = device_ids_by_token(activity_deps, owner)
    fcm_emulator.fail(dead, "INVALID_ARGUMENT")
    outcome = await _deliver(temporal_client, liked_push(activity_deps, owner))
    assert outcome.removed == [ids[dead]] and outcome.label == "token-removed"
    assert tokens_of(activity_deps, owner) == []


async def test_an_invalid_token_answer_removes_only_that_token(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [bad, good] = user_with_devices(activity_deps, 2)
    ids = device_ids_by_token(activity_deps, owner)
    fcm_emulator.fail(bad, "INVALID_ARGUMENT")  # FCM's answer names message.token
    outcome = await _deliver(temporal_client, liked_push(activity_deps, owner))
    assert (outcome.sent, outcome.removed, outcome.label) == ([ids[good]], [ids[bad]], "sent-token-removed")
    assert tokens_of(activity_deps, owner) == [good]
    assert [a["outcome"] for a in fcm_emulator.attempts(bad)] == ["INVALID_ARGUMENT"]  # not retried


def _failed(kind: str, reason: str) -> float:
    return REGISTRY.get_sample_value("sosohappy_push_failed_total", {"kind": kind, "reason": reason}) or 0.0


async def test_an_invalid_argument_not_about_the_token_fails_visibly_and_keeps_the_devices(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, tokens = user_with_devices(activity_deps, 2)
    for token in tokens:  # FCM refuses the message (a field of it), not the tokens
        fcm_emulator.fail(token, "INVALID_ARGUMENT", field="message.apns.payload.aps")
    before = _failed("like", "INVALID_MESSAGE")
    req = liked_push(activity_deps, owner)
    await request_push(temporal_client, req)
    handle = temporal_client.get_workflow_handle(req.workflow_id)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PushRejected"
    assert tokens_of(activity_deps, owner) == tokens  # every device kept
    for token in tokens:  # permanent: one attempt each, no retry
        assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["INVALID_ARGUMENT"]
    desc = await handle.describe()
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes}
    assert attrs["SosoOutcome"] == "rejected"
    assert _failed("like", "INVALID_MESSAGE") - before == 2


async def test_a_repeated_trigger_sends_once(
    temporal_client: Client, activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    req = liked_push(activity_deps, owner)
    await request_push(temporal_client, req)
    await _deliver(temporal_client, req)
    await request_push(temporal_client, req)
    assert len(fcm_emulator.messages(token)) == 1


async def test_no_device_completes_quietly(temporal_client: Client, activity_deps: ActivityDeps) -> None:
    owner, _ = user_with_devices(activity_deps, 0)
    outcome = await _deliver(temporal_client, liked_push(activity_deps, owner))
    assert outcome.label == "no-device"


async def test_request_push_never_raises_without_temporal(activity_deps: ActivityDeps) -> None:
    await request_push(None, like_push(1, 2, 3, 4))
