"""A DM to an offline user, through the API, the worker and the FCM emulator: the push fits FCM's limit
and carries ids, the receiver keeps every device, and the workflow history holds no message text."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from websockets.sync.client import connect

from activities.deps import ActivityDeps
from emulators import fcm
from emulators.control import FcmEmulator
from storage import devices, logins, users
from temporal.codec import ENCODING
from temporal.ids import dm_push_workflow_id
from tests.dm.helpers import party
from tests.fixtures.ios_client import IOSClient
from tests.workflows.push_helpers import tokens_of

pytestmark = pytest.mark.usefixtures("worker")


def _raw_payloads(node: Any) -> list[Payload]:
    """Every payload of a history (JSON form), as stored."""
    if isinstance(node, list):
        return [p for item in node for p in _raw_payloads(item)]
    if not isinstance(node, dict):
        return []
    if set(node) >= {"metadata", "data"} and isinstance(node["data"], str):
        return [json_format.ParseDict(node, Payload())]
    return [p for value in node.values() for p in _raw_payloads(value)]


async def _decoded_payloads(client: Client, history: dict[str, Any]) -> list[str]:
    """Every payload of a history, the encrypted ones opened with the client's codec (search attributes
    are payloads the codec never sees: kept as they are)."""
    codec = client.data_converter.payload_codec
    plain: list[Payload] = []
    for payload in _raw_payloads(history):
        sealed = codec is not None and payload.metadata.get("encoding") == ENCODING
        plain.append((await codec.decode([payload]))[0] if sealed and codec else payload)
    return [p.data.decode("utf-8", "replace") for p in plain]


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


async def test_a_1990_character_korean_dm_to_an_offline_user_fits_and_keeps_every_device(
    http: httpx.Client,
    api_url: str,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    temporal_client: Client,
) -> None:
    sender = IOSClient(http).sign_up("p" + uuid.uuid4().hex[:7])
    receiver = IOSClient(http).sign_up("q" + uuid.uuid4().hex[:7])
    with activity_deps.sessions.begin() as session:
        receiver_id = users.id_of(session, receiver.nickname)
        sender_id = users.id_of(session, sender.nickname)
        assert receiver_id is not None and sender_id is not None
        tablet = logins.open_session(session, receiver_id, activity_deps.settings.refresh_token_ttl_seconds)
        devices.register_device(session, receiver_id, f"tablet-{uuid.uuid4().hex}", tablet.id)
    receiver_tokens = tokens_of(activity_deps, receiver_id)
    assert len(receiver_tokens) == 2

    text = ("안녕하세요 오늘도 행복한 하루 " * 200)[:1990]
    frame = {"sender": sender.nickname, "receiver": receiver.nickname, "text": text}
    raw = json.dumps(frame, ensure_ascii=False)
    assert len(raw.encode()) > fcm.MAX_PAYLOAD_BYTES  # the frame alone would not fit a push
    headers = {"Authorization": sender.access, "email": sender.email}
    ws_url = api_url.replace("http://", "ws://") + f"/dm-service/connect-dm?nickname={sender.nickname}"
    with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(raw)
        _wait(lambda: all(fcm_emulator.messages(t) for t in receiver_tokens))

    [stored] = activity_deps.messages.room_page(
        party(activity_deps, sender.nickname).id, party(activity_deps, receiver.nickname).id, 10**16, 10
    )
    for token in receiver_tokens:
        [push] = fcm_emulator.messages(token)
        message = push["message"]
        assert fcm.payload_bytes(message) <= fcm.MAX_PAYLOAD_BYTES
        without_target = {k: v for k, v in message.items() if k != "token"}
        assert len(json.dumps(without_target, ensure_ascii=False).encode()) <= fcm.MAX_PAYLOAD_BYTES
        assert message["notification"] == {"title": sender.nickname, "body": text[:25] + "..."}
        assert message["data"] == {
            "kind": "dm",
            "messageId": stored.id,
            "senderId": str(sender_id),
            "count": "1",
        }
        assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["accepted"]
    assert tokens_of(activity_deps, receiver_id) == receiver_tokens  # every device kept

    # Only ids crossed Temporal: the workflow's history holds neither the text nor its preview.
    handle = temporal_client.get_workflow_handle(dm_push_workflow_id(receiver_id, sender_id))
    await handle.result()
    payloads = await _decoded_payloads(temporal_client, (await handle.fetch_history()).to_json_dict())
    assert any(stored.id in p for p in payloads)  # the payloads were read
    assert not any(text[:10] in p or text[:25] in p for p in payloads)
