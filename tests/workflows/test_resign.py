"""Resign through the API and ResignWorkflow: afterwards no trace of the user in MySQL, Mongo or devices."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from bson import ObjectId
from sqlalchemy import func, or_, select, text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.deps import ActivityDeps
from dm.messages import Party, StoredMessage
from dm.writes import Draft, Stale, store_batch
from emulators.control import AppleEmulator
from storage import feeds
from storage.feed_images import NewImage
from storage.feeds import NewEntry
from storage.models import (
    Block,
    DeviceRegistration,
    Feed,
    FeedCategory,
    FeedImage,
    FeedImageChunk,
    FeedLike,
    LoginSession,
    User,
)
from temporal.accounts import ResignResult
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import eventually

pytestmark = pytest.mark.usefixtures("worker")
NOW = datetime(2024, 1, 20)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _member(http: httpx.Client, email: str | None = None, **sign_in: str) -> tuple[IOSClient, str]:
    app = IOSClient(http)
    assert app.sign_in(email or f"r{uuid.uuid4().hex[:10]}@gmail.com", **sign_in).status_code == 200
    nick = "r" + uuid.uuid4().hex[:7]
    resp = app.post_multipart("/auth-service/setProfile", [("email", app.email), ("nickname", nick)])
    assert resp.status_code == 200, resp.text
    return app, nick


def _user_id(deps: ActivityDeps, nickname: str) -> int:
    with deps.sessions() as s:
        return s.scalars(select(User.id).where(User.nickname == nickname)).one()


def _feed(deps: ActivityDeps, user_id: int, day: int) -> int:
    entry = NewEntry(user_id, day * 10**8, "sunny", 4, "t", True, ["coffee"], [NewImage("image/png", PNG)])
    with deps.engine.begin() as conn:
        feed_id, created = feeds.save_entry(conn, entry)
    assert created
    return feed_id


async def _resign(app: IOSClient, temporal_client: Client, user_id: int) -> ResignResult:
    resp = app.post_multipart("/auth-service/resign", [("email", app.email)])
    assert resp.json() == {"email": app.email, "success": True}
    return await temporal_client.get_workflow_handle(f"resign:{user_id}", result_type=ResignResult).result()


async def test_resign_removes_every_trace(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    app, nick = _member(http)
    _friend, friend_nick = _member(http)
    uid, fid = _user_id(activity_deps, nick), _user_id(activity_deps, friend_nick)
    own_feed, friends_feed = _feed(activity_deps, uid, 20240120), _feed(activity_deps, fid, 20240121)
    with activity_deps.sessions() as s:
        own_images = list(s.scalars(select(FeedImage.id).where(FeedImage.feed_id == own_feed)))
    assert len(own_images) == 1
    with activity_deps.sessions.begin() as s:
        s.add_all(
            [
                FeedLike(feed_id=friends_feed, user_id=uid, created_at=NOW),
                FeedLike(feed_id=own_feed, user_id=fid, created_at=NOW),
                Block(blocker_id=uid, blocked_id=fid, created_at=NOW),
                Block(blocker_id=fid, blocked_id=uid, created_at=NOW),
            ]
        )
    _other, other_nick = _member(http)
    me, friend = Party(uid, nick), Party(fid, friend_nick)
    other = Party(_user_id(activity_deps, other_nick), other_nick)
    store = activity_deps.messages
    store.insert(me, friend, 2024012010000000, "hi")
    store.insert(friend, me, 2024012010000001, "hello")
    # Another user stored under the same nickname (they held it before): not the resigning user's.
    store.insert(Party(other.id, nick), friend, 2024012010000002, "same name, another user")
    store.insert(friend, other, 2024012010000003, "unrelated")
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
    # A legacy message (stored by nickname only, not converted): the resigning user's by their nickname.
    coll.insert_one({"sender": nick, "receiver": friend_nick, "date": 2024012010000004, "text": "legacy"})

    result = await _resign(app, temporal_client, uid)

    assert (result.feeds_deleted, result.messages_deleted, result.devices_removed) == (1, 3, 1)
    with activity_deps.sessions() as s:
        assert s.get(User, uid) is None
        assert s.scalar(select(func.count()).select_from(Feed).where(Feed.user_id == uid)) == 0
        assert (
            s.scalar(select(func.count()).select_from(FeedCategory).where(FeedCategory.feed_id == own_feed))
            == 0
        )
        assert s.scalar(select(func.count()).select_from(FeedImage).where(FeedImage.feed_id == own_feed)) == 0
        assert (
            s.scalar(
                select(func.count())
                .select_from(FeedImageChunk)
                .where(FeedImageChunk.image_id.in_(own_images))
            )
            == 0
        )
        assert s.scalar(select(func.count()).select_from(FeedLike).where(FeedLike.user_id == uid)) == 0
        assert (
            s.scalar(
                select(func.count())
                .select_from(Block)
                .where(or_(Block.blocker_id == uid, Block.blocked_id == uid))
            )
            == 0
        )
        assert (
            s.scalar(
                select(func.count()).select_from(DeviceRegistration).where(DeviceRegistration.user_id == uid)
            )
            == 0
        )
        assert (
            s.scalar(select(func.count()).select_from(LoginSession).where(LoginSession.user_id == uid)) == 0
        )
        assert s.get(User, fid) is not None  # the friend and their feed stay
        assert s.get(Feed, friends_feed) is not None
    assert coll.count_documents({"$or": [{"senderId": uid}, {"receiverId": uid}]}) == 0
    assert coll.count_documents({"text": "legacy"}) == 0
    assert sorted(d["text"] for d in coll.find({"$or": [{"senderId": fid}, {"receiverId": fid}]})) == [
        "same name, another user",
        "unrelated",
    ]
    # The tokens are dead at once, and a second resign call cannot start a second workflow.
    assert app.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 403
    desc = await temporal_client.get_workflow_handle(f"resign:{uid}").describe()
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes if p.key.name.startswith("Soso")}
    assert attrs == {"SosoUserId": str(uid), "SosoKind": "resign", "SosoOutcome": "deleted"}
    await _assert_no_step_waits_long_for_a_dead_worker(temporal_client, uid)


async def _assert_no_step_waits_long_for_a_dead_worker(temporal_client: Client, user_id: int) -> None:
    """Each step the resign scheduled is tried again within 30 s of its worker dying: it heartbeats
    with that timeout, or its whole attempt is limited to it (``tests/workflows/test_resign_durability.py``
    kills a worker in the message step)."""
    history = await temporal_client.get_workflow_handle(f"resign:{user_id}").fetch_history()
    limits = {
        e.activity_task_scheduled_event_attributes.activity_type.name: (
            e.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta()
            or e.activity_task_scheduled_event_attributes.start_to_close_timeout.ToTimedelta()
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert limits and all(limit <= timedelta(seconds=30) for limit in limits.values()), limits


async def test_apple_user_resign_revokes_the_apple_token(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client, apple_emulator: AppleEmulator
) -> None:
    code = f"resign-{uuid.uuid4().hex[:6]}"
    apple_emulator.register_code(code, sub="s-resign", email="r@icloud.com")
    app, nick = _member(
        http,
        "r@icloud.com",
        provider="apple",
        provider_id="s-resign",
        authorization_code=base64.b64encode(code.encode()).decode(),
    )
    uid = _user_id(activity_deps, nick)
    with activity_deps.sessions() as s:
        apple_token = s.get(User, uid).apple_refresh_token
    result = await _resign(app, temporal_client, uid)
    assert result.apple == "revoked"
    assert [r["token"] for r in apple_emulator.revocations()] == [apple_token]
    await _assert_no_step_waits_long_for_a_dead_worker(temporal_client, uid)


async def test_an_apple_refusal_is_recorded_and_the_account_still_goes(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client, apple_emulator: AppleEmulator
) -> None:
    code = f"resign-{uuid.uuid4().hex[:6]}"
    apple_emulator.register_code(code, sub="s-refused", email="q@icloud.com")
    app, nick = _member(
        http,
        "q@icloud.com",
        provider="apple",
        provider_id="s-refused",
        authorization_code=base64.b64encode(code.encode()).decode(),
    )
    uid = _user_id(activity_deps, nick)
    apple_emulator.fail("revoke", 400)
    result = await _resign(app, temporal_client, uid)
    assert result.apple == "refused"
    with activity_deps.sessions() as s:
        assert s.get(User, uid) is None


def test_resigning_someone_else_is_400(http: httpx.Client) -> None:
    victim, _ = _member(http)
    attacker, _ = _member(http)
    assert attacker.post_multipart("/auth-service/resign", [("email", victim.email)]).status_code == 400


# -- what happens while a resign runs -------------------------------------------------------------


@contextmanager
def _devices_held(deps: ActivityDeps, user_id: int) -> Iterator[None]:
    """Hold the user's device rows locked: the resign's ``remove_devices`` step (after the feeds, likes,
    blocks and messages are gone, before the account row) waits until the block ends."""
    with deps.engine.connect() as conn, conn.begin():
        held = conn.execute(
            select(DeviceRegistration.id).where(DeviceRegistration.user_id == user_id).with_for_update()
        ).all()
        assert held, "the member has a device registration to hold"
        yield


async def _removal_waiting(deps: ActivityDeps) -> bool:
    """Whether a statement deleting device registrations waits now (the server's process list)."""
    with deps.engine.connect() as conn:
        query = text(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE info LIKE 'DELETE FROM device_registrations%'"
        )
        return int(conn.execute(query).scalar_one()) > 0


async def test_signing_up_again_while_the_resign_runs_opens_a_new_account_the_resign_leaves_alone(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """The resign request frees the account's e-mail: signing up again before the workflow is done
    opens a fresh account (no nickname, none of the old data) instead of reopening the one being deleted,
    and what the user writes there survives the resign."""
    email = f"again{uuid.uuid4().hex[:8]}@gmail.com"
    app, nick = _member(http, email)
    uid = _user_id(activity_deps, nick)
    _feed(activity_deps, uid, 20240120)
    with _devices_held(activity_deps, uid):
        assert app.post_multipart("/auth-service/resign", [("email", app.email)]).status_code == 200
        await eventually(lambda: _removal_waiting(activity_deps), "the resign waiting at remove_devices")
        again = IOSClient(http)
        resp = again.sign_in(email)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"nickname": ""}  # a new account: the sign-up screen, not the old diary
        new_nick = "r" + uuid.uuid4().hex[:7]
        resp = again.post_multipart(
            "/auth-service/setProfile", [("email", again.email), ("nickname", new_nick)]
        )
        assert resp.status_code == 200, resp.text
        new_uid = _user_id(activity_deps, new_nick)
        assert new_uid != uid
        with activity_deps.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Feed).where(Feed.user_id == new_uid)) == 0
        _feed(activity_deps, new_uid, 20240121)
    result = await temporal_client.get_workflow_handle(f"resign:{uid}", result_type=ResignResult).result()
    assert result.feeds_deleted == 1
    with activity_deps.sessions() as s:
        assert s.get(User, uid) is None
        fresh = s.get(User, new_uid)
        assert fresh is not None and fresh.account_email == f"{email}+kakao" and fresh.nickname == new_nick
        assert s.scalar(select(func.count()).select_from(Feed).where(Feed.user_id == new_uid)) == 1
    assert again.get_query("/auth-service/checkDuplicateNickname", {"nickname": nick}).status_code == 200


async def test_no_message_to_a_resigning_user_is_stored_and_one_that_raced_the_resign_is_deleted(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client
) -> None:
    """No message to a user who asked to resign is stored (the room statement checks it); one whose
    transaction checked the receiver just before the resign committed, and so is stored after the
    resign's message step while the account row still stands, is deleted by the step after the
    account's; once the row is gone no message to the user is stored."""
    app, nick = _member(http)
    _friend, friend_nick = _member(http)
    me, friend = (
        Party(_user_id(activity_deps, nick), nick),
        Party(_user_id(activity_deps, friend_nick), friend_nick),
    )
    coll = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]

    def send(text: str) -> StoredMessage | Stale:
        draft = Draft(str(ObjectId()), 2024012010000000, text)
        (outcome,) = store_batch(activity_deps.engine, activity_deps.messages, [((friend, me), draft)])
        return outcome

    with _devices_held(activity_deps, me.id):
        assert app.post_multipart("/auth-service/resign", [("email", app.email)]).status_code == 200
        await eventually(lambda: _removal_waiting(activity_deps), "the resign waiting at remove_devices")
        assert isinstance(send("late"), Stale)  # the receiver asked to resign
        activity_deps.messages.insert(friend, me, 2024012010000000, "raced the resign's commit")
        assert coll.count_documents({"receiverId": me.id}) == 1
    result = await temporal_client.get_workflow_handle(f"resign:{me.id}", result_type=ResignResult).result()
    assert result.messages_deleted == 1
    assert coll.count_documents({"$or": [{"senderId": me.id}, {"receiverId": me.id}]}) == 0
    assert isinstance(send("after"), Stale)  # no account row, no room row, no message
    assert coll.count_documents({"receiverId": me.id}) == 0
