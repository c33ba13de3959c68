"""A device token FCM cannot take (signed in with characters no registration token has) is removed at
its first push, through the API, the worker and the FCM emulator, which refuses it as FCM does; the
account's other device still gets the notice."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.deps import ActivityDeps
from emulators.control import FcmEmulator
from storage.models import DeviceRegistration, Feed
from temporal.ids import like_push_workflow_id
from temporal.push import PushOutcome
from tests.api.feed_helpers import kst, like, member, nick, unique_year, user_id
from tests.fixtures.ios_client import IOSClient
from tests.workflows.push_helpers import push_result

pytestmark = pytest.mark.usefixtures("worker")


@pytest.mark.parametrize("odd", ["fcm token with spaces", "fcm-토큰", "fcm-\x01-control", "fcm-é"])
async def test_a_token_fcm_calls_invalid_is_removed_at_the_first_push(
    http: httpx.Client,
    activity_deps: ActivityDeps,
    fcm_emulator: FcmEmulator,
    temporal_client: Client,
    odd: str,
) -> None:
    author = IOSClient(http, device_token=odd).sign_up(nick())
    other = IOSClient(http)
    assert other.sign_in(author.email.removesuffix("+kakao")).status_code == 200
    date = kst(unique_year(), 7, 7)
    assert author.save_feed(date).status_code == 200
    fan = member(http)
    assert like(fan, author.nickname, date).json() == {"like": True}

    author_id, fan_id = user_id(activity_deps, author.nickname), user_id(activity_deps, fan.nickname)
    with activity_deps.sessions() as session:
        feed_id = session.scalars(select(Feed.id).where(Feed.user_id == author_id)).one()
    outcome = await push_result(temporal_client, like_push_workflow_id(feed_id, fan_id), PushOutcome)
    assert (len(outcome.sent), len(outcome.removed), outcome.label) == (1, 1, "sent-token-removed")
    assert fcm_emulator.messages(odd) == []
    assert [a["outcome"] for a in fcm_emulator.attempts(odd)] == ["INVALID_ARGUMENT"]  # not retried
    assert len(fcm_emulator.messages(other.device_token)) == 1
    with activity_deps.sessions() as session:
        tokens = session.scalars(
            select(DeviceRegistration.token).where(DeviceRegistration.user_id == author_id)
        )
        assert list(tokens) == [other.device_token]
