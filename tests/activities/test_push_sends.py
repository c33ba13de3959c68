"""The push send activities against the FCM emulator, called as the worker calls them: how long a
transient FCM failure asks Temporal to wait before the next attempt, and a push found no longer true at
send time (a like withdrawn, its entry deleted or private, the liker or DM sender resigned, the liker
blocked by the author or the DM sender by the receiver after the event, a batch's messages deleted, the
reminder's day written) is not sent and keeps the device."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.push import NO_LONGER_TRUE, DeviceSend, DmDeviceSend, PushActivities
from activities.push_text import REMINDER_BODY
from emulators.control import FcmEmulator
from storage import feeds, users
from storage.models import User
from temporal.push import LikeNotice, NudgeNotice
from tests.dm.helpers import party
from tests.workflows.push_helpers import (
    device_ids_by_token,
    liked_entry,
    named_user,
    tokens_of,
    user_with_devices,
)


def _failed_send(deps: ActivityDeps, token: str, attempt: int = 1) -> ApplicationError:
    """The error of sending a notice to ``token`` on attempt ``attempt``."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    req = DeviceSend(kind="like", token=token, title="소소해피", body="hi")
    with pytest.raises(ApplicationError) as info:
        env.run(PushActivities(deps).send_to_device, req)
    return info.value


@pytest.mark.parametrize(
    ("attempt", "minutes"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (12, 10)], ids=lambda v: str(v)
)
def test_quota_exceeded_without_retry_after_backs_off_from_a_minute(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, attempt: int, minutes: int
) -> None:
    token = f"quota-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, "QUOTA_EXCEEDED", times=1)
    err = _failed_send(activity_deps, token, attempt)
    assert (err.type, err.non_retryable) == ("QUOTA_EXCEEDED", False)
    assert err.next_retry_delay == timedelta(minutes=minutes)
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["QUOTA_EXCEEDED"]


@pytest.mark.parametrize("error", ["QUOTA_EXCEEDED", "UNAVAILABLE"])
def test_retry_after_is_honoured_as_given(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, error: str
) -> None:
    token = f"after-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, error, times=1, retry_after=7)
    err = _failed_send(activity_deps, token, attempt=3)
    assert (err.type, err.next_retry_delay) == (error, timedelta(seconds=7))


@pytest.mark.parametrize("error", ["QUOTA_EXCEEDED", "UNAVAILABLE"])
def test_retry_after_as_an_http_date_is_honoured(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, error: str
) -> None:
    token = f"after-date-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC) + timedelta(minutes=30)
    fcm_emulator.fail(token, error, times=1, retry_after=format_datetime(at, usegmt=True))
    err = _failed_send(activity_deps, token, attempt=3)
    assert err.type == error
    # Until that moment (seconds dropped by the date's format, however long the send took).
    assert err.next_retry_delay is not None
    assert timedelta(minutes=25) <= err.next_retry_delay <= timedelta(minutes=30)


def test_retry_after_as_a_date_already_past_leaves_the_usual_backoff(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    token = f"after-past-{uuid.uuid4().hex[:8]}"
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    fcm_emulator.fail(token, "QUOTA_EXCEEDED", times=1, retry_after=past)
    err = _failed_send(activity_deps, token, attempt=1)
    assert err.next_retry_delay == timedelta(minutes=1)  # QUOTA_EXCEEDED's own rule


def test_other_transient_errors_leave_the_backoff_to_the_retry_policy(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    token = f"internal-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, "INTERNAL", times=1)
    err = _failed_send(activity_deps, token)
    assert (err.type, err.next_retry_delay) == ("INTERNAL", None)


DATE = 2024012017042712


def _resigning(deps: ActivityDeps, user_id: int) -> None:
    """The user asked to resign (the account row stays until the resign deletes it)."""
    with deps.sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        users.release_sign_in_key(user)


def _deleted(deps: ActivityDeps, user_id: int) -> None:
    """The resign's last step: the account row goes (its likes and devices with it)."""
    with deps.engine.begin() as conn:
        conn.execute(delete(User).where(User.id == user_id))


def _skipped(deps: ActivityDeps, send: Callable[[PushActivities], Callable[..., str]], req: object) -> str:
    """The reason a send that must not go out gives (and check it is settled as skipped, for good)."""
    with pytest.raises(ApplicationError) as info:
        ActivityEnvironment().run(send(PushActivities(deps)), req)
    assert (info.value.type, info.value.non_retryable) == (NO_LONGER_TRUE, True)
    assert info.value.message.startswith("not sent: ")
    [reason] = info.value.details
    return str(reason)


def _like_send(deps: ActivityDeps, owner: int, feed_id: int, liker: int) -> DeviceSend:
    [device_id] = device_ids_by_token(deps, owner).values()
    like = LikeNotice(feed_id=feed_id, liker_user_id=liker, owner_user_id=owner, date=DATE)
    return DeviceSend(kind="like", device_id=int(device_id), receiver_user_id=owner, like=like)


def _withdraw(deps: ActivityDeps, feed_id: int, liker: int) -> None:
    with deps.engine.begin() as conn:
        assert not feeds.toggle_like(conn, feed_id, liker)


def _delete_entry(deps: ActivityDeps, owner: int) -> None:
    with deps.engine.begin() as conn:
        assert feeds.delete_entry(conn, owner, DATE)


def _make_private(deps: ActivityDeps, owner: int) -> None:
    with deps.engine.begin() as conn:
        assert feeds.set_public(conn, owner, DATE, False) is False


def _block(deps: ActivityDeps, owner: int, liker: int) -> None:
    """The author blocks the liker after the like (as ``/auth-service/block`` records it)."""
    with deps.sessions.begin() as session:
        users.block(session, owner, liker)


def _skips_counted(reason: str) -> float:
    """``sosohappy_push_skipped_total{kind="like",reason}`` of this process so far."""
    value = REGISTRY.get_sample_value("sosohappy_push_skipped_total", {"kind": "like", "reason": reason})
    return value or 0.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda deps, owner, feed, liker: _withdraw(deps, feed, liker), "LIKE_WITHDRAWN"),
        (lambda deps, owner, feed, liker: _delete_entry(deps, owner), "ENTRY_GONE"),
        (lambda deps, owner, feed, liker: _make_private(deps, owner), "ENTRY_PRIVATE"),
        (lambda deps, owner, feed, liker: _resigning(deps, liker), "LIKER_GONE"),
        (lambda deps, owner, feed, liker: _deleted(deps, liker), "LIKER_GONE"),
        (lambda deps, owner, feed, liker: _block(deps, owner, liker), "LIKER_BLOCKED"),
    ],
    ids=["unliked", "entry-deleted", "entry-private", "liker-resigning", "liker-deleted", "liker-blocked"],
)
def test_a_like_no_longer_true_is_not_sent(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, change: Callable[..., None], reason: str
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1, f"o{uuid.uuid4().hex[:8]}")
    feed_id, liker, _ = liked_entry(activity_deps, owner, DATE)
    change(activity_deps, owner, feed_id, liker)
    req = _like_send(activity_deps, owner, feed_id, liker)
    counted = _skips_counted(reason)
    assert _skipped(activity_deps, lambda p: p.send_to_device, req) == reason
    assert _skips_counted(reason) == counted + 1
    assert fcm_emulator.attempts(token) == []
    assert tokens_of(activity_deps, owner) == [token]  # the device is kept


def test_a_like_still_true_is_sent_with_both_nicknames_even_if_the_liker_blocked_the_author(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner_nickname = f"o{uuid.uuid4().hex[:8]}"
    owner, [token] = user_with_devices(activity_deps, 1, owner_nickname)
    feed_id, liker, liker_nickname = liked_entry(activity_deps, owner, DATE)
    _block(activity_deps, liker, owner)  # blocking is one-directional: the liker blocking the author
    ActivityEnvironment().run(
        PushActivities(activity_deps).send_to_device, _like_send(activity_deps, owner, feed_id, liker)
    )
    [msg] = fcm_emulator.messages(token)
    assert (
        msg["message"]["notification"]["body"]
        == f"{liker_nickname}님이 {owner_nickname}님의 행복을 응원합니다🩷"
    )


def _dm(deps: ActivityDeps, count: int) -> tuple[int, int, str, list[str]]:
    """A receiver with one device and ``count`` messages to them from a new sender: ``(receiver, sender,
    token, message ids oldest first)``."""
    sender, sender_nickname = named_user(deps, "s")
    receiver_nickname = f"r{uuid.uuid4().hex[:8]}"
    receiver, [token] = user_with_devices(deps, 1, receiver_nickname)
    a, b = party(deps, sender_nickname), party(deps, receiver_nickname)
    ids = [deps.messages.insert(a, b, DATE + i, f"메시지 {i}").id for i in range(count)]
    return receiver, sender, token, ids


def _dm_send(deps: ActivityDeps, receiver: int, sender: int, ids: list[str]) -> DmDeviceSend:
    [device_id] = device_ids_by_token(deps, receiver).values()
    return DmDeviceSend(
        device_id=int(device_id),
        receiver_user_id=receiver,
        sender_user_id=sender,
        message_id=ids[-1],
        count=len(ids),
        earlier_message_ids=ids[:-1],
    )


@pytest.mark.parametrize("how", ["resigning", "deleted"])
def test_a_dm_push_of_a_sender_who_resigned_is_not_sent(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, how: str
) -> None:
    receiver, sender, token, ids = _dm(activity_deps, 2)
    (_resigning if how == "resigning" else _deleted)(activity_deps, sender)
    req = _dm_send(activity_deps, receiver, sender, ids)
    assert _skipped(activity_deps, lambda p: p.send_dm_to_device, req) == "SENDER_GONE"
    assert fcm_emulator.attempts(token) == [] and tokens_of(activity_deps, receiver) == [token]


def test_a_dm_push_after_the_receiver_blocked_the_sender_is_not_sent(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    receiver, sender, token, ids = _dm(activity_deps, 2)
    req = _dm_send(activity_deps, receiver, sender, ids)
    _block(activity_deps, sender, receiver)  # the sender blocking the receiver changes nothing
    ActivityEnvironment().run(PushActivities(activity_deps).send_dm_to_device, req)
    assert len(fcm_emulator.messages(token)) == 1
    _block(activity_deps, receiver, sender)  # the messages were stored; then the receiver blocks
    assert _skipped(activity_deps, lambda p: p.send_dm_to_device, req) == "SENDER_BLOCKED"
    assert len(fcm_emulator.attempts(token)) == 1 and tokens_of(activity_deps, receiver) == [token]


def test_a_dm_push_is_sent_while_any_of_its_messages_is_left(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    receiver, sender, token, ids = _dm(activity_deps, 3)
    req = _dm_send(activity_deps, receiver, sender, ids)
    activity_deps.messages.delete_many(ids[1:])  # the newest two are gone
    ActivityEnvironment().run(PushActivities(activity_deps).send_dm_to_device, req)
    [msg] = fcm_emulator.messages(token)
    assert msg["message"]["notification"]["body"] == "새 메시지 3개: 메시지 0"  # the newest one left
    assert msg["message"]["data"]["messageId"] == ids[0]
    activity_deps.messages.delete_many(ids[:1])  # none left
    assert _skipped(activity_deps, lambda p: p.send_dm_to_device, req) == "MESSAGES_GONE"
    assert len(fcm_emulator.attempts(token)) == 1 and tokens_of(activity_deps, receiver) == [token]


def test_a_reminder_for_a_day_written_meanwhile_is_not_sent(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    user, [token] = user_with_devices(activity_deps, 1)
    [device_id] = device_ids_by_token(activity_deps, user).values()
    day = DATE // 10**8
    req = DeviceSend(
        kind="reminder", device_id=int(device_id), receiver_user_id=user, nudge=NudgeNotice(period=day)
    )
    ActivityEnvironment().run(PushActivities(activity_deps).send_to_device, req)  # nothing written yet
    [msg] = fcm_emulator.messages(token)
    assert msg["message"]["notification"]["body"] == REMINDER_BODY
    liked_entry(activity_deps, user, DATE)  # the user writes the day's entry (liked, or not: any entry)
    assert _skipped(activity_deps, lambda p: p.send_to_device, req) == "ENTRY_WRITTEN"
    other_day = req.model_copy(update={"nudge": NudgeNotice(period=day + 1)})
    ActivityEnvironment().run(PushActivities(activity_deps).send_to_device, other_day)  # another day: sent
    assert len(fcm_emulator.messages(token)) == 2 and tokens_of(activity_deps, user) == [token]
