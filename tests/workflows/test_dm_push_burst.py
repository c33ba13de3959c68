"""A burst of DMs to an offline user is one push per room, with the count (time-skipping test server, so
the gathering window passes without waiting; real activities against the FCM emulator, the test
database and the message store; events counted in the histories, never wall-clock time)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.push import DmDeviceSend, FailureRecord, PushActivities
from api.outbox import DM_PUSH, starters_for
from api.push import request_dm_push
from emulators.control import FcmEmulator
from temporal.push import DmArrived, DmPushRequest, DmPushStart
from temporal.task_queues import PUSH, named
from tests.dm.helpers import party
from tests.workflows.push_helpers import device_ids_by_token, tokens_of, user_with_devices
from tests.workflows.recording import record_if_asked
from tests.workflows.time_skipping import time_skipping_env
from workflows.dm_push import TAKEN_KEPT, DmPushWorkflow

#: Far longer than sending a few signals could ever take: the burst always lands in one window, and
#: the time-skipping server passes the window at once when the test waits for the result.
WINDOW = 600.0


@asynccontextmanager
async def _worker(
    client: Client, activities: Sequence[Callable[..., Any]], queue: str | None = None
) -> AsyncIterator[str]:
    queue = queue or f"dm-push-{uuid.uuid4()}"
    with ThreadPoolExecutor(8) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[DmPushWorkflow],
            activity_executor=executor,
            activities=activities,
        ):
            yield queue


def _real_activities(deps: ActivityDeps) -> list[Callable[..., Any]]:
    push = PushActivities(deps)
    return [push.device_ids, push.send_dm_to_device, push.remove_device, push.record_push_failure]


async def _events(client: Client, workflow_id: str, kind: EventType.ValueType) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(1 for e in history.events if e.event_type == kind)


def _messages(deps: ActivityDeps, sender: str, receiver: str, texts: list[str]) -> list[str]:
    a, b = party(deps, sender), party(deps, receiver)
    return [deps.messages.insert(a, b, 2024012017042700 + i, t).id for i, t in enumerate(texts)]


async def test_five_dms_in_a_burst_are_one_push_with_the_count(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    sender_nick, receiver_nick = f"s{uuid.uuid4().hex[:6]}", f"r{uuid.uuid4().hex[:6]}"
    sender, _ = user_with_devices(activity_deps, 0, nickname=sender_nick)
    receiver, tokens = user_with_devices(activity_deps, 2, nickname=receiver_nick)
    ids = _messages(activity_deps, sender_nick, receiver_nick, [f"메시지 {i}" for i in range(1, 6)])
    req = DmPushRequest(receiver_user_id=receiver, sender_user_id=sender, window_seconds=WINDOW)
    async with time_skipping_env() as env, _worker(env.client, _real_activities(activity_deps)) as queue:
        for message_id in ids:
            await request_dm_push(env.client, req, message_id, task_queue=queue)
        handle = await request_dm_push(env.client, req, ids[2], task_queue=queue)  # repeated: counts once
        assert handle is not None
        outcome = await handle.result()
        assert (
            await _events(env.client, req.workflow_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) == 6
        )
        assert await _events(env.client, req.workflow_id, EventType.EVENT_TYPE_TIMER_STARTED) == 1
        desc = await handle.describe()
        await record_if_asked(handle, "dm_push_per_device_burst")
    device_ids = device_ids_by_token(activity_deps, receiver)
    assert (outcome.pushes, outcome.messages) == (1, 5)
    assert sorted(outcome.last.sent) == sorted(device_ids[t] for t in tokens)
    attrs = {p.key.name: p.value for p in desc.typed_search_attributes if p.key.name.startswith("Soso")}
    assert attrs == {"SosoUserId": str(receiver), "SosoKind": "push-dm", "SosoOutcome": "sent"}
    room = f"dm-{min(sender, receiver)}-{max(sender, receiver)}"
    for token in tokens:
        [push] = fcm_emulator.messages(token)  # one push per device for the five messages
        message = push["message"]
        assert message["notification"] == {"title": sender_nick, "body": "새 메시지 5개: 메시지 5"}
        assert message["data"] == {"kind": "dm", "messageId": ids[-1], "senderId": str(sender), "count": "5"}
        assert message["apns"] == {
            "headers": {"apns-collapse-id": room},
            "payload": {"aps": {"thread-id": room}},
        }
        assert message["android"] == {"collapse_key": room, "notification": {"tag": room}}
    assert tokens_of(activity_deps, receiver) == tokens


async def test_dms_in_two_rooms_are_two_pushes(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    receiver_nick = f"r{uuid.uuid4().hex[:6]}"
    receiver, [token] = user_with_devices(activity_deps, 1, nickname=receiver_nick)
    rooms = []
    for count in (3, 2):
        nick = f"s{uuid.uuid4().hex[:6]}"
        sender, _ = user_with_devices(activity_deps, 0, nickname=nick)
        ids = _messages(activity_deps, nick, receiver_nick, [f"{nick} {i}" for i in range(count)])
        rooms.append(
            (DmPushRequest(receiver_user_id=receiver, sender_user_id=sender, window_seconds=WINDOW), ids)
        )
    async with time_skipping_env() as env, _worker(env.client, _real_activities(activity_deps)) as queue:
        handles = {}
        for i in range(3):  # interleaved, as two people would write
            for req, ids in rooms:
                if i < len(ids):
                    handles[req.workflow_id] = await request_dm_push(
                        env.client, req, ids[i], task_queue=queue
                    )
        outcomes = [await handle.result() for handle in handles.values() if handle is not None]
    assert [(o.pushes, o.messages) for o in outcomes] == [(1, 3), (1, 2)]
    pushes = fcm_emulator.messages(token)
    assert len(pushes) == 2
    by_room = {p["message"]["apns"]["headers"]["apns-collapse-id"]: p["message"] for p in pushes}
    for (req, ids), count in zip(rooms, (3, 2), strict=True):
        room = f"dm-{min(req.sender_user_id, receiver)}-{max(req.sender_user_id, receiver)}"
        assert by_room[room]["data"]["count"] == str(count)
        assert by_room[room]["data"]["messageId"] == ids[-1]
        assert by_room[room]["notification"]["body"].startswith(f"새 메시지 {count}개: ")


class HeldSends:
    """Stand-in activities for one device whose first ``held`` sends each wait until the test lets them
    go (``let_go(turn)``), so the test can signal while a given batch is being sent."""

    def __init__(self, held: int = 1) -> None:
        self.sends: list[DmDeviceSend] = []
        self._started = [threading.Event() for _ in range(held)]
        self._go = [threading.Event() for _ in range(held)]
        self._all_go = threading.Event()

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="device_ids")
        def device_ids(user_id: int) -> list[int]:
            return [1]

        @activity.defn(name="send_dm_to_device")
        def send_dm_to_device(req: DmDeviceSend) -> str:
            turn = len(self.sends)
            self.sends.append(req)
            if turn < len(self._go) and not self._all_go.is_set():
                self._started[turn].set()
                assert self._go[turn].wait(60), "the test never let the send go"
            return "projects/p/messages/1"

        return [device_ids, send_dm_to_device]

    async def sending(self, turn: int) -> None:
        assert await asyncio.to_thread(self._started[turn].wait, 60)

    def let_go(self, turn: int) -> None:
        self._go[turn].set()

    def let_all_go(self) -> None:
        self._all_go.set()
        for go in self._go:
            go.set()


async def test_messages_arriving_while_a_batch_is_sent_make_one_more_push_a_window_later() -> None:
    held = HeldSends()
    req = DmPushRequest(receiver_user_id=1, sender_user_id=2, window_seconds=WINDOW)
    async with time_skipping_env() as env, _worker(env.client, held.activities()) as queue:
        handle = await request_dm_push(env.client, req, "m1", task_queue=queue)
        assert handle is not None
        result = asyncio.ensure_future(handle.result())  # lets the server skip the first window
        await held.sending(0)
        for message_id in ("m2", "m3"):
            await request_dm_push(env.client, req, message_id, task_queue=queue)
        held.let_go(0)
        outcome = await result
        assert await _events(env.client, req.workflow_id, EventType.EVENT_TYPE_TIMER_STARTED) == 2
    assert (outcome.pushes, outcome.messages) == (2, 3)
    assert [(s.message_id, s.count) for s in held.sends] == [("m1", 1), ("m3", 2)]


async def test_a_long_burst_continues_as_new_with_the_messages_not_yet_pushed() -> None:
    held = HeldSends()
    req = DmPushRequest(receiver_user_id=3, sender_user_id=4, window_seconds=WINDOW, batches_per_run=1)
    async with time_skipping_env() as env, _worker(env.client, held.activities()) as queue:
        handle = await request_dm_push(env.client, req, "m1", task_queue=queue)
        assert handle is not None
        result = asyncio.ensure_future(handle.result())  # follows the runs to the last one
        await held.sending(0)
        await request_dm_push(env.client, req, "m2", task_queue=queue)
        held.let_go(0)
        outcome = await result
        first_run = env.client.get_workflow_handle(req.workflow_id, run_id=handle.result_run_id)
        history = await first_run.fetch_history()
        await record_if_asked(first_run, "dm_push_continued_superseding")
    continued = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    ]
    assert len(continued) == 1
    assert (outcome.pushes, outcome.messages) == (1, 1)  # the second run pushed the carried message
    assert [(s.message_id, s.count) for s in held.sends] == [("m1", 1), ("m2", 1)]


async def test_a_drained_repeat_of_a_message_is_ignored_once_pushed_and_after_a_continue_as_new() -> None:
    sends = HeldSends(held=2)
    req = DmPushRequest(receiver_user_id=7, sender_user_id=8, window_seconds=WINDOW, batches_per_run=1)
    prefix = f"once{uuid.uuid4().hex[:8]}"
    # The drainer's own starter for a queued DM push (the m1 row), on the push queue of ``prefix``.
    drain = starters_for(prefix)[DM_PUSH]
    row = DmPushStart(
        receiver_user_id=req.receiver_user_id,
        sender_user_id=req.sender_user_id,
        message_id="m1",
        window_seconds=req.window_seconds,
        deadline_seconds=req.deadline_seconds,
    ).model_dump_json()
    async with (
        time_skipping_env() as env,
        _worker(env.client, sends.activities(), named(PUSH, prefix)) as queue,
    ):
        handle = await request_dm_push(env.client, req, "m1", task_queue=queue)  # timed out, yet made
        assert handle is not None
        await drain(env.client, row)  # the row drained while m1 is pending
        result = asyncio.ensure_future(handle.result())  # follows the runs; lets the server skip windows
        try:
            await sends.sending(0)
            await drain(env.client, row)  # drained again while m1 is being pushed
            await request_dm_push(env.client, req, "m2", task_queue=queue)
            sends.let_go(0)  # m1's batch ends; the run continues as new with m2
            await sends.sending(1)
            await drain(env.client, row)  # and again, in the continued run
        finally:
            sends.let_all_go()
        outcome = await result
        signals = await _events(env.client, req.workflow_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
        await record_if_asked(
            env.client.get_workflow_handle(req.workflow_id), "dm_push_signal_once_continued"
        )
    assert [(s.message_id, s.count) for s in sends.sends] == [("m1", 1), ("m2", 1)]
    assert signals == 1  # the continued run got the third repeat, and ignored it
    assert (outcome.pushes, outcome.messages) == (1, 1)


def test_a_run_remembers_only_the_newest_messages_it_took() -> None:
    wf = DmPushWorkflow()
    wf._signal_once = True  # as under the dm-push-signal-once marker
    for i in range(TAKEN_KEPT + 5):
        wf.message_arrived(DmArrived(message_id=f"m{i}"))
    assert len(wf._take()) == TAKEN_KEPT + 5  # every pending message is pushed, none forgotten
    assert list(wf._seen) == [f"m{i}" for i in range(5, TAKEN_KEPT + 5)]
    wf.message_arrived(DmArrived(message_id=f"m{TAKEN_KEPT + 4}"))  # a repeat of a remembered one
    wf.message_arrived(DmArrived(message_id="m0"))  # one long forgotten: taken again
    assert wf._pending == ["m0"]


class OneDeviceFailing:
    """Stand-in activities for a receiver with two devices: device 1 fails every send of ``m1``
    transiently (FCM INTERNAL; its first attempt is held until the test releases it, so the test can
    signal while it runs), device 2 gets everything. Each send is recorded with its attempt's scheduled
    time (server time: skipped by the test server, never the wall clock)."""

    def __init__(self) -> None:
        self.sends: list[tuple[int, str, int, datetime]] = []
        self.given_up: list[FailureRecord] = []
        self.m1_held, self.release = threading.Event(), threading.Event()

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="device_ids")
        def device_ids(user_id: int) -> list[int]:
            return [1, 2]

        @activity.defn(name="send_dm_to_device")
        def send_dm_to_device(req: DmDeviceSend) -> str:
            info = activity.info()
            self.sends.append((req.device_id, req.message_id, req.count, info.current_attempt_scheduled_time))
            if req.device_id == 1 and req.message_id == "m1":
                if info.attempt == 1:
                    self.m1_held.set()
                    assert self.release.wait(60), "the test never released the first send"
                raise ApplicationError("FCM INTERNAL", type="INTERNAL")
            return "projects/p/messages/1"

        @activity.defn(name="record_push_failure")
        def record_push_failure(record: FailureRecord) -> None:
            self.given_up.append(record)

        return [device_ids, send_dm_to_device, record_push_failure]

    def first(self, device_id: int, message_id: str) -> datetime:
        """When the first send of ``message_id`` to ``device_id`` was scheduled."""
        return min(at for d, m, _, at in self.sends if (d, m) == (device_id, message_id))


async def test_a_device_still_retrying_never_holds_back_the_rooms_next_push_to_the_others() -> None:
    failing = OneDeviceFailing()
    req = DmPushRequest(receiver_user_id=5, sender_user_id=6, window_seconds=WINDOW, deadline_seconds=3600)
    async with time_skipping_env() as env, _worker(env.client, failing.activities()) as queue:
        handle = await request_dm_push(env.client, req, "m1", task_queue=queue)
        assert handle is not None
        result = asyncio.ensure_future(handle.result())  # lets the server skip windows and backoffs
        assert await asyncio.to_thread(failing.m1_held.wait, 60)
        await request_dm_push(env.client, req, "m2", task_queue=queue)
        failing.release.set()
        outcome = await result
        cancels = await _events(
            env.client, req.workflow_id, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED
        )
        await record_if_asked(handle, "dm_push_device_superseded")
    # Device 2 got m2 one window after it arrived, while device 1 still retried m1 (its deadline an
    # hour): m1's delivery to device 1 was superseded by m2's (cancelled), never given up on.
    waited = failing.first(2, "m2") - failing.first(1, "m1")
    assert waited < timedelta(seconds=req.deadline_seconds), waited
    assert failing.given_up == [] and cancels == 1
    assert (outcome.pushes, outcome.messages, outcome.superseded) == (2, 2, 1)
    assert sorted(outcome.last.sent) == ["1", "2"] and outcome.last.label == "sent"
    assert [(m, c) for d, m, c, _ in failing.sends if d == 1 and m != "m1"] == [("m2", 1)]
    assert [(m, c) for d, m, c, _ in failing.sends if d == 2] == [("m1", 1), ("m2", 1)]
