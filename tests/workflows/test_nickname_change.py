"""``NicknameChangeWorkflow`` after messages were keyed by user id: setProfile starts none, and the runs
queued before the upgrade (outbox rows, re-sent starts) still complete, pinning the legacy messages
under the old nickname to the renamed user and converting them, each rename once."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.nickname import NicknameActivities
from api.outbox import STARTERS
from storage import nickname_changes, users
from storage.models import DmRoom, NicknameChangeCounter, User, WorkflowOutbox
from temporal.accounts import NicknameChange
from tests.fixtures.waiting import eventually
from tests.workflows.test_resign import _member, _user_id
from workflows.nickname import NicknameChangeWorkflow

pytestmark = pytest.mark.usefixtures("worker")


def _rename(app: Any, new: str) -> None:
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", new)])
    assert resp.status_code == 200, resp.text


def _collection(deps: ActivityDeps) -> Any:
    return deps.mongo[deps.settings.mongo_database]["message"]


def _legacy(deps: ActivityDeps, sender: str, receiver: str, text: str) -> None:
    """A message as the nickname-keyed releases stored it."""
    _collection(deps).insert_one(
        {
            "messageRoomId": f"{sender},{receiver}",
            "sender": sender,
            "receiver": receiver,
            "date": 1,
            "text": text,
        }
    )


def _applied(deps: ActivityDeps, user_id: int) -> int:
    with deps.sessions() as s:
        return (
            s.scalar(select(NicknameChangeCounter.applied).where(NicknameChangeCounter.user_id == user_id))
            or 0
        )


def _pre_upgrade_rename(deps: ActivityDeps, user_id: int, old: str, new: str) -> NicknameChange:
    """What setProfile committed before the upgrade: the users row and a numbered rename."""
    with deps.sessions.begin() as s:
        user = s.get(User, user_id)
        assert user is not None
        users.set_nickname(user, new)
        return NicknameChange(
            user_id=user_id, old=old, new=new, change_id=nickname_changes.next_change_id(s, user_id)
        )


async def test_set_profile_starts_no_rename_workflow(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    app, old = _member(http)
    uid = _user_id(activity_deps, old)
    _rename(app, "n" + uuid.uuid4().hex[:7])
    with activity_deps.sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(WorkflowOutbox).where(WorkflowOutbox.user_id == uid))
            == 0
        )
        assert s.get(NicknameChangeCounter, uid) is None
    with pytest.raises(RPCError):
        await temporal_client.get_workflow_handle(f"nickname-change:{uid}").describe()


async def test_a_queued_pre_upgrade_rename_pins_the_legacy_messages_to_its_user(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    _, old = _member(http)
    friend_app, friend = _member(http)
    uid, fid = _user_id(activity_deps, old), _user_id(activity_deps, friend)
    _legacy(activity_deps, old, friend, "hi")
    _legacy(activity_deps, friend, old, "hello")
    with activity_deps.engine.begin() as conn:  # the room row the nickname-keyed release wrote with them
        conn.execute(
            insert(DmRoom).values(
                user_low=min(uid, fid),
                user_high=max(uid, fid),
                last_sender_id=fid,
                last_receiver_id=uid,
                last_date=1,
                last_text="hello",
                last_message_id="0" * 24,
            )
        )
    new = "z" + uuid.uuid4().hex[:7]
    change = _pre_upgrade_rename(activity_deps, uid, old, new)
    # Someone else takes the freed nickname before the queued rename runs (the worker was away).
    taker, _ = _member(http)
    _rename(taker, old)

    await STARTERS["rename"](temporal_client, change.model_dump_json())  # the outbox drainer's start
    applied = await temporal_client.get_workflow_handle(f"nickname-change:{uid}").result()
    assert applied == [f"{old}->{new}"]
    assert _applied(activity_deps, uid) == change.change_id
    # Pinned to the renamed user and converted: in their room with the friend, nobody else's.
    key = f"{min(uid, fid)}-{max(uid, fid)}"
    room = {
        d["text"]: (d["senderId"], d["receiverId"]) for d in _collection(activity_deps).find({"roomKey": key})
    }
    assert room == {"hi": (uid, fid), "hello": (fid, uid)}
    page = friend_app.post_multipart(
        "/dm-service/findDirectMessage", [("sender", friend), ("receiver", new), ("timeBoundary", "2")]
    )
    assert page.status_code == 200, page.text
    assert [(m["sender"], m["receiver"], m["text"]) for m in page.json()] == [
        (new, friend, "hi"),
        (friend, new, "hello"),
    ]
    theirs = taker.post_multipart(
        "/dm-service/findDirectMessage", [("sender", old), ("receiver", friend), ("timeBoundary", "2")]
    )
    assert theirs.status_code == 200 and theirs.json() == []


async def test_a_rename_sent_twice_to_one_run_is_applied_once(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """The outbox re-sends a start whose success it did not record: the running workflow ignores it."""
    _, old = _member(http)
    _, friend = _member(http)
    uid = _user_id(activity_deps, old)
    _legacy(activity_deps, old, friend, "hi")
    change = _pre_upgrade_rename(activity_deps, uid, old, "d" + uuid.uuid4().hex[:7])
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
            assert await handle.result() == [f"{old}->{change.new}"]
    history = await handle.fetch_history()
    activities = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    signals = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert (len(signals), len(activities)) == (2, 1)
    # A worker that dies in it is found out by its missed heartbeat, not after the 5 minute timeout.
    rename = activities[0].activity_task_scheduled_event_attributes
    assert timedelta(0) < rename.heartbeat_timeout.ToTimedelta() < rename.start_to_close_timeout.ToTimedelta()
    assert _collection(activity_deps).count_documents({"senderId": uid, "text": "hi"}) == 1
    assert _applied(activity_deps, uid) == change.change_id


async def test_a_rename_re_sent_after_a_later_one_changes_nothing(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """A → B, then B → A, both queued before the upgrade; a late re-send of the first (a new workflow
    run) is skipped by its number."""
    _, first = _member(http)
    _, friend = _member(http)
    uid = _user_id(activity_deps, first)
    _legacy(activity_deps, first, friend, "hi")
    second = "b" + uuid.uuid4().hex[:7]
    one = _pre_upgrade_rename(activity_deps, uid, first, second)
    two = _pre_upgrade_rename(activity_deps, uid, second, first)
    for change in (one, two):
        await STARTERS["rename"](temporal_client, change.model_dump_json())

    async def applied_second() -> bool:
        return _applied(activity_deps, uid) == two.change_id

    await eventually(applied_second, "the second rename applied")
    await STARTERS["rename"](temporal_client, one.model_dump_json())
    handle = temporal_client.get_workflow_handle(f"nickname-change:{uid}")

    async def completed() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    # The re-sent start runs (its own run, or the tail of the last one) and ends.
    await eventually(completed, "the re-sent rename completed")
    assert _applied(activity_deps, uid) == two.change_id
    assert _collection(activity_deps).count_documents({"senderId": uid, "text": "hi"}) == 1
    with activity_deps.sessions() as s:
        user = s.get(User, uid)
        assert user is not None and user.nickname == first
