"""Issue 14: after sign-in (Kakao and Apple), a like, a DM to an offline user, a rename and an Apple
resign on the real dev server, through the API and the workers, no history holds an e-mail, a device
token, an authorize code or its verifier, an Apple code or refresh token, an access or refresh token, a
nickname (old or new), a provider id or the message text: only ids crossed Temporal
(``history_scan.find_secrets`` reads the raw payload bytes, whatever codec wrote them). Decoding every
payload through the codec server (as the Web UI and the CLI do) gives each one back readable, with the
ids it is about, and still none of those secrets. The same run records the replay histories of these
versions (``recording.record_if_asked``)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from sqlalchemy import select
from temporalio.api.common.v1 import Payloads
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from websockets.sync.client import connect

from activities.deps import ActivityDeps
from activities.push_text import dm_body
from emulators.control import AppleEmulator, FcmEmulator
from storage.models import Feed, SignInRequest, User
from temporal.accounts import ResignResult
from temporal.codec import ENCODING
from temporal.ids import dm_push_workflow_id, like_push_workflow_id, resign_workflow_id, sign_in_workflow_id
from temporal.push import DmPushOutcome, PushOutcome
from tests.api.feed_helpers import kst
from tests.fixtures.codec import CodecServer
from tests.fixtures.ios_client import IOSClient, code_verifier
from tests.fixtures.waiting import wait_until
from tests.workflows.history_scan import find_secrets, payloads_in
from tests.workflows.recording import record_if_asked

pytestmark = pytest.mark.usefixtures("worker")


def _user_id(deps: ActivityDeps, nickname: str) -> int:
    with deps.sessions() as s:
        return s.scalars(select(User.id).where(User.nickname == nickname)).one()


def _set_nickname(app: IOSClient, nickname: str) -> None:
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nickname)])
    assert resp.status_code == 200, resp.text
    app.nickname = nickname


def _decoded_through(codec_server: CodecServer, events: list[HistoryEvent]) -> list[HistoryEvent]:
    """Copies of ``events`` with every payload replaced by what the codec server's ``/decode`` answers
    for it (one request per event, as the Web UI asks)."""
    decoded: list[HistoryEvent] = []
    with httpx.Client(base_url=codec_server.url, headers=codec_server.auth, timeout=30) as client:
        for event in events:
            copy = HistoryEvent()
            copy.CopyFrom(event)
            payloads = list(payloads_in(copy))
            if payloads:
                body = json_format.MessageToJson(Payloads(payloads=payloads))
                resp = client.post("/decode", content=body, headers={"X-Namespace": "test"})
                assert resp.status_code == 200, resp.text
                answered = json_format.Parse(resp.text, Payloads()).payloads
                assert len(answered) == len(payloads)
                for mine, plain in zip(payloads, answered, strict=True):
                    mine.CopyFrom(plain)
            decoded.append(copy)
    return decoded


def _encodings(events: list[HistoryEvent]) -> set[bytes]:
    return {p.metadata.get("encoding", b"") for e in events for p in payloads_in(e)}


async def test_no_secret_in_the_histories_of_sign_in_like_dm_and_resign(
    http: httpx.Client,
    codec_server: CodecServer,
    api_url: str,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    apple_emulator: AppleEmulator,
    temporal_client: Client,
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Kakao sign-in: the feed's owner, offline when the DM arrives.
    owner, owner_verifier = IOSClient(http), code_verifier()
    owner_code = owner.authorize_code(owner_verifier)
    owner_email, owner_provider_id = f"kakao{tag}@gmail.com", f"kakao-id-{tag}"
    assert (
        owner.present_code(owner_code, owner_verifier, owner_email, "kakao", owner_provider_id).status_code
        == 200
    )
    # Apple sign-in: the liker and DM sender, who resigns at the end.
    apple_code, apple_sub, apple_email = f"apple-code-{tag}", f"apple-sub-{tag}", f"apple{tag}@icloud.com"
    apple_code_b64 = base64.b64encode(apple_code.encode()).decode()
    apple_emulator.register_code(apple_code, sub=apple_sub, email=apple_email)
    liker, liker_verifier = IOSClient(http), code_verifier()
    liker_code = liker.authorize_code(liker_verifier)
    resp = liker.present_code(liker_code, liker_verifier, apple_email, "apple", apple_sub, apple_code_b64)
    assert resp.status_code == 200, resp.text
    _set_nickname(owner, f"o{tag}")
    _set_nickname(liker, f"l{tag}")
    owner_id, liker_id = _user_id(activity_deps, owner.nickname), _user_id(activity_deps, liker.nickname)
    # A rename: the owner's first nickname is freed (and must appear nowhere either).
    first_owner_nickname = owner.nickname
    _set_nickname(owner, f"r{tag}")
    with activity_deps.sessions() as s:
        refresh_token = s.get(User, liker_id).apple_refresh_token
        assert refresh_token  # stored where resign reads it
        # Every sign-in request was answered: no row keeps an e-mail, a code or a token.
        assert (
            s.scalars(select(SignInRequest).where(SignInRequest.email.in_([owner_email, apple_email]))).all()
            == []
        )

    # A like: one push to the owner's device, its text composed by the send activity.
    date = kst(2024, 1, 20)
    assert owner.save_feed(date).status_code == 200
    resp = liker.post_multipart(
        "/feed-service/updateLike",
        [("nickname", owner.nickname), ("date", str(date)), ("srcNickname", liker.nickname)],
    )
    assert resp.json() == {"like": True}
    like_body = f"{liker.nickname}님이 {owner.nickname}님의 행복을 응원합니다🩷"
    wait_until(
        lambda: len(fcm_emulator.messages(owner.device_token)) == 1,
        "1 push(es) at the FCM emulator",
        deadline_seconds=60,
    )
    assert fcm_emulator.messages(owner.device_token)[0]["message"]["notification"]["body"] == like_body
    with activity_deps.sessions() as s:
        feed_id = s.scalars(select(Feed.id).where(Feed.user_id == owner_id)).one()
    like = temporal_client.get_workflow_handle(
        like_push_workflow_id(feed_id, liker_id), result_type=PushOutcome
    )
    assert (await like.result()).label == "sent"

    # A DM to the offline owner: one push, its preview read by the send activity.
    text = f"비밀 메시지 {tag} 오늘 저녁에 만나요"
    headers = {"Authorization": liker.access, "email": liker.email}
    ws_url = api_url.replace("http://", "ws://") + f"/dm-service/connect-dm?nickname={liker.nickname}"
    frame = {"sender": liker.nickname, "receiver": owner.nickname, "text": text}
    with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps(frame, ensure_ascii=False))
        wait_until(
            lambda: len(fcm_emulator.messages(owner.device_token)) == 2,
            "2 push(es) at the FCM emulator",
            deadline_seconds=60,
        )
    assert fcm_emulator.messages(owner.device_token)[1]["message"]["notification"]["body"] == dm_body(text)
    dm = temporal_client.get_workflow_handle(
        dm_push_workflow_id(owner_id, liker_id), result_type=DmPushOutcome
    )
    assert (await dm.result()).messages == 1

    # The Apple user resigns: the token read from the account row is revoked.
    liker_access, liker_refresh = liker.access, liker.refresh
    assert liker.post_multipart("/auth-service/resign", [("email", liker.email)]).status_code == 200
    resign = temporal_client.get_workflow_handle(resign_workflow_id(liker_id), result_type=ResignResult)
    assert (await resign.result()).apple == "revoked"
    assert refresh_token in [r["token"] for r in apple_emulator.revocations()]

    needles = [
        owner_email, apple_email, owner.email, liker.email,  # e-mails, and the account ids built of them
        owner.device_token, liker.device_token,
        owner_code, owner_verifier, liker_code, liker_verifier,
        apple_code, apple_code_b64, refresh_token,
        owner.access, owner.refresh, liker_access, liker_refresh,
        text, text[:25], like_body,
        owner.nickname, first_owner_nickname, liker.nickname, owner_provider_id, apple_sub,
    ]  # fmt: skip
    flows: dict[str, Any] = {
        "sign_in_kakao_request": temporal_client.get_workflow_handle(sign_in_workflow_id(owner_code)),
        "sign_in_apple_request": temporal_client.get_workflow_handle(sign_in_workflow_id(liker_code)),
        "push_delivery_like_by_ids": like,
        "dm_push_by_device_ids": dm,
        "resign_apple_late_messages": resign,
    }
    # What each flow is about, by id: readable once decoded (and only then, for the inputs' ids).
    about = {
        "sign_in_kakao_request": [],
        "sign_in_apple_request": [],
        "push_delivery_like_by_ids": [f'"feed_id":{feed_id}', f'"liker_user_id":{liker_id}'],
        "dm_push_by_device_ids": [f'"receiver_user_id":{owner_id}', f'"sender_user_id":{liker_id}'],
        "resign_apple_late_messages": [f'"user_id":{liker_id}'],
    }
    found: dict[str, list[str]] = {}
    found_decoded: dict[str, list[str]] = {}
    for name, handle in flows.items():
        events: list[HistoryEvent] = list((await handle.fetch_history()).events)
        assert find_secrets(events, [str(handle.id)]), "the scanner read the events"  # positive control
        found[name] = find_secrets(events, needles)
        started = events[0].workflow_execution_started_event_attributes.input.payloads
        assert started and {p.metadata["encoding"] for p in started} == {ENCODING}, name  # stored sealed
        assert ENCODING in _encodings(events), name
        decoded = await asyncio.to_thread(_decoded_through, codec_server, events)
        assert ENCODING not in _encodings(decoded), name  # the codec server opened every one
        for fragment in about[name]:
            assert find_secrets(decoded, [fragment]), f"{fragment} readable in {name} once decoded"
            assert not find_secrets(events, [fragment]), f"{fragment} readable in {name} without the codec"
        found_decoded[name] = find_secrets(decoded, needles)
        await record_if_asked(handle, name)
    assert found == {name: [] for name in flows}
    assert found_decoded == {name: [] for name in flows}
