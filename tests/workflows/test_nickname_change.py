"""A nickname change through setProfile reaches every store that keeps nicknames (NicknameChangeWorkflow)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client

from activities.deps import ActivityDeps
from storage.messages import room_id
from storage.models import User
from tests.fixtures.ios_client import IOSClient
from tests.workflows.test_resign import _member, _user_id

pytestmark = pytest.mark.usefixtures("worker")


def _rename(app: IOSClient, new: str) -> None:
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", new)])
    assert resp.status_code == 200, resp.text


async def _settled(deps: ActivityDeps, nickname: str, expected: int) -> None:
    coll = deps.mongo[deps.settings.mongo_database]["message"]
    for _ in range(100):
        if coll.count_documents({"$or": [{"sender": nickname}, {"receiver": nickname}]}) == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"messages of {nickname} never reached {expected}")


async def test_rename_reaches_messages_and_room_ids(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    app, old = _member(http)
    _, friend = _member(http)
    uid = _user_id(activity_deps, old)
    store = activity_deps.messages
    store.insert(old, friend, 2024012010000000, "hi")
    store.insert(friend, old, 2024012010000001, "hello")
    new = "z" + uuid.uuid4().hex[:7]
    _rename(app, new)
    await _settled(activity_deps, new, 2)
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert coll.count_documents({"$or": [{"sender": old}, {"receiver": old}]}) == 0
    assert {d["messageRoomId"] for d in coll.find({"$or": [{"sender": new}, {"receiver": new}]})} == {
        room_id(new, friend)
    }
    assert [m.text for m in store.room_page(friend, new, before=2**62, limit=10)] == ["hi", "hello"]
    with activity_deps.sessions() as s:
        assert s.scalars(select(User.nickname).where(User.id == uid)).one() == new
    applied = await temporal_client.get_workflow_handle(f"nickname-change:{uid}").result()
    assert applied == [f"{old}->{new}"]


async def test_quick_successive_renames_end_consistent(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    app, first = _member(http)
    _, friend = _member(http)
    activity_deps.messages.insert(first, friend, 2024012010000000, "hi")
    second, third = "s" + uuid.uuid4().hex[:7], "t" + uuid.uuid4().hex[:7]
    _rename(app, second)
    _rename(app, third)
    await _settled(activity_deps, third, 1)
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert coll.count_documents({"sender": {"$in": [first, second]}}) == 0
    # The old nickname is free again for someone else.
    other, _ = _member(http)
    _rename(other, first)
