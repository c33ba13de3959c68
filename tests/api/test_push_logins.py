"""Pushes reach only devices whose login is live, through the API, the worker and the FCM emulator.

The app never signs out (CLIENT_CONTRACT §3: logout is local), so a login ends by expiring or by being
revoked for refresh-token reuse. One account is signed in on three devices: one stays live, one's login is
revoked for reuse (a suspected theft), one's login expires. A like and a DM to that account reach only the
live one: no notice with the liker's name or the message's text reaches a device whose login is over.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client
from websockets.sync.client import connect

from activities.deps import ActivityDeps
from config import Settings
from emulators.control import FcmEmulator
from storage.logins import utcnow
from storage.models import DeviceRegistration, Feed, LoginSession
from temporal.ids import dm_push_workflow_id, like_push_workflow_id
from temporal.push import PushOutcome
from tests.api.feed_helpers import kst, like, member, unique_year, user_id
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.logins import login_id, reissue_twice
from tests.workflows.push_helpers import push_result

pytestmark = pytest.mark.usefixtures("worker")


def _second_device(http: httpx.Client, app: IOSClient) -> IOSClient:
    """The same account signed in on another device (its own login and FCM token)."""
    other = IOSClient(http)
    assert other.sign_in(app.email.removesuffix("+kakao")).status_code == 200
    other.nickname = app.nickname
    return other


def _revoked_for_reuse(http: httpx.Client, deps: ActivityDeps, app: IOSClient, grace: float) -> None:
    """Someone presents a refresh token of ``app``'s login two generations old: the login is revoked."""
    stolen = app.refresh
    reissue_twice(deps, app, grace)
    thief = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    assert thief.reissue().status_code == 403


def _expired(deps: ActivityDeps, app: IOSClient) -> None:
    """``app``'s login reached the end of its refresh lifetime (not yet deleted by housekeeping)."""
    with deps.sessions.begin() as session:
        row = session.get(LoginSession, login_id(app))
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)


def _registered(deps: ActivityDeps, *apps: IOSClient) -> set[str]:
    tokens = [app.device_token for app in apps]
    with deps.sessions() as session:
        query = select(DeviceRegistration.token).where(DeviceRegistration.token.in_(tokens))
        return set(session.scalars(query))


def _account_on_three_devices(
    http: httpx.Client, deps: ActivityDeps, grace: float
) -> tuple[IOSClient, IOSClient, IOSClient]:
    """(live, revoked for reuse, expired): one account signed in on three devices."""
    live = member(http)
    stolen, old = _second_device(http, live), _second_device(http, live)
    assert _registered(deps, live, stolen, old) == {live.device_token, stolen.device_token, old.device_token}
    _revoked_for_reuse(http, deps, stolen, grace)
    _expired(deps, old)
    # The reuse revocation forgot its login's device; the expired login's row waits for housekeeping.
    assert _registered(deps, live, stolen, old) == {live.device_token, old.device_token}
    return live, stolen, old


async def test_a_like_reaches_only_the_devices_whose_login_is_live(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    temporal_client: Client,
    settings: Settings,
) -> None:
    grace = settings.refresh_reuse_grace_seconds
    author, stolen, old = _account_on_three_devices(http, activity_deps, grace)
    fan = member(http)
    date = kst(unique_year(), 5, 5)
    assert author.save_feed(date).status_code == 200
    assert like(fan, author.nickname, date).json() == {"like": True}

    author_id, fan_id = user_id(activity_deps, author.nickname), user_id(activity_deps, fan.nickname)
    with activity_deps.sessions() as session:
        feed_id = session.scalars(select(Feed.id).where(Feed.user_id == author_id)).one()
    outcome = await push_result(temporal_client, like_push_workflow_id(feed_id, fan_id), PushOutcome)
    assert len(outcome.sent) == 1 and not (outcome.removed or outcome.undelivered or outcome.rejected)
    assert len(fcm_emulator.messages(author.device_token)) == 1
    assert fcm_emulator.messages(stolen.device_token) == []
    assert fcm_emulator.messages(old.device_token) == []


async def test_a_dm_preview_reaches_only_the_devices_whose_login_is_live(
    http: httpx.Client,
    api_url: str,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    temporal_client: Client,
    settings: Settings,
) -> None:
    grace = settings.refresh_reuse_grace_seconds
    receiver, stolen, old = _account_on_three_devices(http, activity_deps, grace)
    sender = IOSClient(http).sign_up("s" + uuid.uuid4().hex[:7])
    text = "오늘 비밀 이야기 " + uuid.uuid4().hex[:6]
    frame = {"sender": sender.nickname, "receiver": receiver.nickname, "text": text}
    headers = {"Authorization": sender.access, "email": sender.email}
    ws_url = api_url.replace("http://", "ws://") + f"/dm-service/connect-dm?nickname={sender.nickname}"
    with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps(frame, ensure_ascii=False))
        deadline = time.monotonic() + 60
        while not fcm_emulator.messages(receiver.device_token):
            assert time.monotonic() < deadline, "the live device got no push"
            time.sleep(0.1)

    receiver_id = user_id(activity_deps, receiver.nickname)
    sender_id = user_id(activity_deps, sender.nickname)
    handle = temporal_client.get_workflow_handle(dm_push_workflow_id(receiver_id, sender_id))
    await handle.result()
    [push] = fcm_emulator.messages(receiver.device_token)
    assert push["message"]["notification"]["body"].startswith(text[:10])
    assert fcm_emulator.messages(stolen.device_token) == []
    assert fcm_emulator.messages(old.device_token) == []
