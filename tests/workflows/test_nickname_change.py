"""A nickname change through setProfile reaches every store that keeps nicknames (NicknameChangeWorkflow)."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.nickname import NicknameActivities
from api.outbox import STARTERS
from dm.messages import room_id
from storage import nickname_changes
from storage.models import NicknameChangeCounter, User
from temporal.accounts import NicknameChange
from tests.fixtures.ios_client import IOSClient
from tests.workflows.test_resign import _member, _user_id
from workflows.nickname import NicknameChangeWorkflow

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


def _applied(deps: ActivityDeps, user_id: int) -> int:
    with deps.sessions() as s:
        return s.scalar(select(NicknameChangeCounter.applied).where(NicknameChangeCounter.user_id == user_id))


async def test_a_rename_sent_twice_to_one_run_is_applied_once(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """The outbox re-sends a start whose success it did not record: the running workflow ignores it."""
    _, old = _member(http)
    _, friend = _member(http)
    uid = _user_id(activity_deps, old)
    activity_deps.messages.insert(old, friend, 2024012010000000, "hi")
    new = "d" + uuid.uuid4().hex[:7]
    with activity_deps.sessions.begin() as s:  # what setProfile commits, minus the start
        s.get(User, uid).nickname = new
        change = NicknameChange(
            user_id=uid, old=old, new=new, change_id=nickname_changes.next_change_id(s, uid)
        )
    queue = f"rename-twice-{uuid.uuid4().hex[:8]}"  # no worker polls it until both starts are in
    for _ in range(2):
        handle = await temporal_client.start_workflow(
            NicknameChangeWorkflow.run,
            id=f"nickname-change:{uid}",
            task_queue=queue,
            start_signal="rename",
            start_signal_args=[change],
        )
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            temporal_client,
            task_queue=queue,
            workflows=[NicknameChangeWorkflow],
            activities=[NicknameActivities(activity_deps).rename_in_messages],
            activity_executor=executor,
        ):
            assert await handle.result() == [f"{old}->{new}"]
    history = await handle.fetch_history()
    activities = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    signals = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert (len(signals), len(activities)) == (2, 1)
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert coll.count_documents({"sender": new}) == 1
    assert _applied(activity_deps, uid) == change.change_id


async def test_a_rename_re_sent_after_a_later_one_changes_nothing(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """A → B, then B → A; a late re-send of the first (a new workflow run) must not rename back to B."""
    app, first = _member(http)
    _, friend = _member(http)
    uid = _user_id(activity_deps, first)
    activity_deps.messages.insert(first, friend, 2024012010000000, "hi")
    second = "b" + uuid.uuid4().hex[:7]
    before = _applied(activity_deps, uid) or 0
    _rename(app, second)
    _rename(app, first)
    for _ in range(300):
        if _applied(activity_deps, uid) == before + 2:
            break
        await asyncio.sleep(0.1)
    assert _applied(activity_deps, uid) == before + 2
    late = NicknameChange(user_id=uid, old=first, new=second, change_id=before + 1)
    await STARTERS["rename"](temporal_client, late.model_dump_json())
    handle = temporal_client.get_workflow_handle(f"nickname-change:{uid}")
    for _ in range(300):  # the re-sent start runs (its own run, or the tail of the last one) and ends
        desc = await handle.describe()
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            break
        await asyncio.sleep(0.1)
    assert desc.status == WorkflowExecutionStatus.COMPLETED
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    assert coll.count_documents({"sender": first}) == 1
    assert coll.count_documents({"sender": second}) == 0
    with activity_deps.sessions() as s:
        assert s.get(User, uid).nickname == first
