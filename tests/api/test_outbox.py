"""No workflow start is lost after a commit: resigns answered while Temporal is down (and renames queued
before messages were keyed by user id) are started by the drainer once it is back, each once and in order;
so is a like's or a DM's push whose start failed, queued outside its receiver's order (a DM's pushed
once, and not at all once the receiver blocked its sender).

The Temporal-down scenarios run a private stack (its own MySQL database, broker, Temporal dev server,
worker and API app): the session's API drains the session database, and would otherwise start these
rows on the session's Temporal server and hide what is under test.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from websockets.sync.client import connect as ws_connect

from activities.deps import ActivityDeps
from api.outbox import OutboxDrainer
from config import Settings
from dm.messages import Party
from emulators.control import FcmEmulator
from storage import outbox, users
from storage.db import create_db_engine, migrate, session_factory
from storage.models import Feed, LoginSession, User, WorkflowOutbox
from storage.nickname_changes import next_change_id
from storage.users import set_nickname
from temporal.accounts import NicknameChange, ResignResult
from temporal.client import connect
from temporal.ids import dm_push_workflow_id, like_push_workflow_id
from temporal.push import DmPushOutcome, DmPushStart, LikeNotice, PushRequest
from tests.api.feed_helpers import kst, like, unique_year
from tests.api.outbox_stack import Stack, member, metric, private_stack, wait_for
from tests.fixtures.databases import scratch_mysql_database
from tests.fixtures.ios_client import IOSClient


@pytest.fixture(scope="module")
def stack(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with private_stack(settings, tmp_path_factory.mktemp("outbox-stack")) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("fresh", [False, True], ids=["server-state-kept", "fresh-server"])
async def test_a_resign_and_a_pre_upgrade_rename_queued_while_temporal_is_down_are_done_once_it_returns(
    stack: Stack, fresh: bool
) -> None:
    renamed, first, renamed_id = member(stack)
    _peer, peer, peer_id = member(stack)
    leaving, leaving_nick, leaving_id = member(stack)
    messages = stack.deps.messages
    coll = stack.deps.mongo[stack.settings.mongo_database]["message"]
    # Stored by nickname before the upgrade (legacy), and by id since.
    coll.insert_many(
        [
            {"sender": first, "receiver": peer, "date": 2024012010000000, "text": "hi"},
            {"sender": peer, "receiver": first, "date": 2024012010000001, "text": "hello"},
        ]
    )
    messages.insert(Party(leaving_id, leaving_nick), Party(peer_id, peer), 2024012010000002, "bye")
    second, third = "m" + uuid.uuid4().hex[:7], "z" + uuid.uuid4().hex[:7]
    queued_before = {
        k: metric("sosohappy_workflow_starts_queued_total", kind=k) for k in ("rename", "resign")
    }

    with stack.temporal_away(fresh=fresh):
        # A rename committed before the upgrade, its start still in the outbox (as setProfile queued it).
        with stack.deps.sessions.begin() as s:
            user = s.get(User, renamed_id)
            assert user is not None
            set_nickname(user, second)
            change = NicknameChange(
                user_id=renamed_id, old=first, new=second, change_id=next_change_id(s, renamed_id)
            )
            outbox.enqueue(
                s, "rename", f"nickname-change:{renamed_id}", renamed_id, change.model_dump_json(), 0
            )
        # A rename today is the users row alone: answered, nothing queued.
        resp = renamed.post_multipart(
            "/auth-service/setProfile", [("email", renamed.email), ("nickname", third)]
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"email": renamed.email, "success": True}
        resp = leaving.post_multipart("/auth-service/resign", [("email", leaving.email)])
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"email": leaving.email, "success": True}

        # Committed: the users row renamed, every login of the leaving user revoked, the resign queued.
        with stack.deps.sessions() as s:
            assert s.get(User, renamed_id).nickname == third
            assert (
                s.scalar(
                    select(func.count())
                    .select_from(LoginSession)
                    .where(LoginSession.user_id == leaving_id, LoginSession.revoked_at.is_(None))
                )
                == 0
            )
        rows = stack.outbox_rows()
        assert [(r.kind, r.workflow_id) for r in rows] == [
            ("rename", f"nickname-change:{renamed_id}"),
            ("resign", f"resign:{leaving_id}"),
        ]
        assert metric("sosohappy_workflow_starts_queued_total", kind="rename") == queued_before["rename"]
        assert metric("sosohappy_workflow_starts_queued_total", kind="resign") == queued_before["resign"] + 1
        ready = httpx.get(f"{stack.url}/readyz", timeout=60)
        assert ready.status_code == 200 and ready.json() == {"status": "degraded"}
        assert metric("sosohappy_dependency_up", dependency="temporal") == 0.0

    wait_for(lambda: stack.outbox_rows() == [], "outbox drained")
    # The pre-upgrade rename pinned the legacy messages to the renamed user; then they were converted.
    wait_for(
        lambda: (
            coll.count_documents({"roomKey": f"{min(renamed_id, peer_id)}-{max(renamed_id, peer_id)}"}) == 2
        ),
        "converted",
    )
    assert [(m.sender_id, m.text) for m in messages.room_page(renamed_id, peer_id, 2**62, 10)] == [
        (renamed_id, "hi"),
        (peer_id, "hello"),
    ]

    def resigned() -> bool:
        with stack.deps.sessions() as s:
            return s.get(User, leaving_id) is None

    wait_for(resigned, "resign finished")
    assert coll.count_documents({"$or": [{"senderId": leaving_id}, {"receiverId": leaving_id}]}) == 0

    client = await connect(stack.settings)
    resign_runs = [w async for w in client.list_workflows(f'WorkflowId = "resign:{leaving_id}"')]
    assert len(resign_runs) == 1
    result = await client.get_workflow_handle(f"resign:{leaving_id}", result_type=ResignResult).result()
    assert result.messages_deleted == 1
    rename_runs = [w async for w in client.list_workflows(f'WorkflowId = "nickname-change:{renamed_id}"')]
    applied: list[str] = []
    for run in sorted(rename_runs, key=lambda w: w.start_time):
        applied += await client.get_workflow_handle(run.id, run_id=run.run_id, result_type=list[str]).result()
    assert applied == [f"{first}->{second}"]


@pytest.mark.slow
async def test_a_like_whose_push_cannot_be_started_is_queued_and_pushed_once_temporal_returns(
    stack: Stack, fcm_emulator: FcmEmulator
) -> None:
    author, author_nick, author_id = member(stack)
    fan, fan_nick, fan_id = member(stack)
    date = kst(unique_year(), 6, 1)
    assert author.save_feed(date).status_code == 200
    with stack.deps.sessions() as s:
        feed_id = s.scalars(select(Feed.id).where(Feed.user_id == author_id)).one()
    workflow_id = like_push_workflow_id(feed_id, fan_id)
    queued_before = metric("sosohappy_push_requests_total", kind="like", result="queued")
    outbox_before = metric("sosohappy_workflow_starts_queued_total", kind="push")

    with stack.temporal_away():
        resp = like(fan, author_nick, date)
        assert resp.status_code == 200 and resp.json() == {"like": True}  # answered as ever
        # The start fails in the background: the push is queued for the author, not dropped.
        wait_for(lambda: len(stack.outbox_rows()) == 1, "push queued")
        [row] = stack.outbox_rows()
        assert (row.kind, row.workflow_id, row.user_id) == ("push", workflow_id, author_id)
        assert row.attempts == 1 and row.last_error
        queued = PushRequest.model_validate_json(row.payload)
        assert queued == PushRequest(
            kind="like",
            workflow_id=workflow_id,
            receiver_user_id=author_id,
            like=LikeNotice(feed_id=feed_id, liker_user_id=fan_id, owner_user_id=author_id, date=date),
            deadline_seconds=stack.settings.push_deadline_seconds,
        )
        # Ids only: neither nickname nor e-mail nor device token is kept in the outbox.
        for secret in (author_nick, fan_nick, author.email, fan.email, author.device_token):
            assert secret not in row.payload
        wait_for(
            lambda: (
                metric("sosohappy_push_requests_total", kind="like", result="queued") == queued_before + 1
            ),
            "counted queued",
        )
        assert metric("sosohappy_workflow_starts_queued_total", kind="push") == outbox_before + 1
        assert fcm_emulator.messages(author.device_token) == []

    wait_for(lambda: stack.outbox_rows() == [], "outbox drained")
    wait_for(lambda: fcm_emulator.messages(author.device_token) != [], "like pushed")
    bodies = [m["message"]["notification"]["body"] for m in fcm_emulator.messages(author.device_token)]
    assert bodies == [f"{fan_nick}님이 {author_nick}님의 행복을 응원합니다\U0001fa77"]
    client = await connect(stack.settings)
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    assert [w.task_queue for w in runs] == [f"{stack.settings.temporal_task_queue_prefix}-push"]
    assert metric("sosohappy_push_requests_total", kind="like", result="queued") == queued_before + 1


def _send_dms(stack: Stack, sender: IOSClient, receiver: IOSClient, text: str, rows: int) -> None:
    """Send ``text`` from ``sender`` to ``receiver`` over the DM socket, kept open until the outbox holds
    ``rows`` rows (the message stored and its push's start failed)."""
    headers = {"Authorization": sender.access, "email": sender.email}
    url = stack.url.replace("http://", "ws://") + f"/dm-service/connect-dm?nickname={sender.nickname}"
    with ws_connect(url, additional_headers=headers, open_timeout=30) as ws:
        ws.send(json.dumps({"sender": sender.nickname, "receiver": receiver.nickname, "text": text}))
        wait_for(lambda: len(stack.outbox_rows()) == rows, "DM push queued")


@pytest.mark.slow
async def test_a_dm_whose_push_cannot_be_started_is_queued_and_pushed_once_temporal_returns(
    stack: Stack, fcm_emulator: FcmEmulator
) -> None:
    receiver, receiver_nick, receiver_id = member(stack)
    sender, sender_nick, sender_id = member(stack)
    blocked, blocked_nick, blocked_id = member(stack)
    before = {
        "queued": metric("sosohappy_push_requests_total", kind="dm", result="queued"),
        "outbox": metric("sosohappy_workflow_starts_queued_total", kind="dm-push"),
        "drained": metric("sosohappy_workflow_starts_total", kind="dm-push", path="drainer"),
    }

    with stack.temporal_away():
        # The receiver is connected nowhere: each stored message's push start fails and is queued.
        _send_dms(stack, sender, receiver, "오늘 저녁 같이 먹어요", rows=1)
        _send_dms(stack, blocked, receiver, "차단될 메시지", rows=2)
        [stored] = stack.deps.messages.room_page(sender_id, receiver_id, 2**62, 10)
        [unwanted] = stack.deps.messages.room_page(blocked_id, receiver_id, 2**62, 10)
        rows = stack.outbox_rows()
        assert [(r.kind, r.workflow_id, r.user_id) for r in rows] == [
            ("dm-push", dm_push_workflow_id(receiver_id, sender_id), receiver_id),
            ("dm-push", dm_push_workflow_id(receiver_id, blocked_id), receiver_id),
        ]
        assert all(r.attempts == 1 and r.last_error for r in rows)
        assert DmPushStart.model_validate_json(rows[0].payload) == DmPushStart(
            receiver_user_id=receiver_id,
            sender_user_id=sender_id,
            message_id=stored.id,
            window_seconds=stack.settings.dm_push_window_seconds,
            deadline_seconds=stack.settings.push_deadline_seconds,
        )
        # Ids only: neither text nor nickname nor e-mail nor device token is kept in the outbox.
        for secret in (stored.text, unwanted.text, receiver_nick, sender_nick, blocked_nick):
            assert all(secret not in r.payload for r in rows)
        for secret in (receiver.email, sender.email, receiver.device_token):
            assert all(secret not in r.payload for r in rows)
        wait_for(
            lambda: (
                metric("sosohappy_push_requests_total", kind="dm", result="queued") == before["queued"] + 2
            ),
            "counted queued",
        )
        assert metric("sosohappy_workflow_starts_queued_total", kind="dm-push") == before["outbox"] + 2
        # While its push waits, the receiver blocks the second sender: that push must not show it.
        with stack.deps.sessions.begin() as s:
            users.block(s, receiver_id, blocked_id)
        assert fcm_emulator.messages(receiver.device_token) == []

    wait_for(lambda: stack.outbox_rows() == [], "outbox drained")
    client = await connect(stack.settings)
    outcomes = {}
    for peer in (sender_id, blocked_id):  # every run of both rooms ended: nothing more is sent
        wf_id = dm_push_workflow_id(receiver_id, peer)
        runs = [w async for w in client.list_workflows(f'WorkflowId = "{wf_id}"')]
        assert [w.task_queue for w in runs] == [f"{stack.settings.temporal_task_queue_prefix}-push"]
        outcomes[peer] = await client.get_workflow_handle(wf_id, result_type=DmPushOutcome).result()
    assert (outcomes[sender_id].pushes, outcomes[sender_id].messages) == (1, 1)
    assert outcomes[blocked_id].last.label == "skipped"  # the send-time check: SENDER_BLOCKED
    [push] = fcm_emulator.messages(receiver.device_token)  # exactly one, for the one message
    assert push["message"]["notification"] == {"title": sender_nick, "body": stored.text}
    assert push["message"]["data"] == {
        "kind": "dm",
        "messageId": stored.id,
        "senderId": str(sender_id),
        "count": "1",
    }
    assert metric("sosohappy_workflow_starts_total", kind="dm-push", path="drainer") == before["drained"] + 2
    assert metric("sosohappy_push_requests_total", kind="dm", result="queued") == before["queued"] + 2


def test_with_temporal_up_a_rename_starts_no_workflow_and_keeps_no_row(
    http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    app = IOSClient(http).sign_up("q" + uuid.uuid4().hex[:7])
    before = metric("sosohappy_workflow_starts_total", kind="rename", path="request")
    resp = app.post_multipart(
        "/auth-service/setProfile", [("email", app.email), ("nickname", "p" + uuid.uuid4().hex[:7])]
    )
    assert resp.status_code == 200, resp.text
    with activity_deps.sessions() as s:
        user_id = s.scalars(select(User.id).where(User.account_email == app.email)).one()
        assert s.scalars(select(WorkflowOutbox).where(WorkflowOutbox.user_id == user_id)).all() == []
    assert metric("sosohappy_workflow_starts_total", kind="rename", path="request") == before


# ---- Two drainers, one database: every row is started once, each user's rows in order. ----


def _sessions(url: str) -> Any:
    return session_factory(create_db_engine(url, pool_size=4))


@pytest.fixture(params=["mysql", "sqlite"])
def outbox_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of the test's own (no API drains it)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
        migrate(url)
        yield url
        return
    with scratch_mysql_database("sosohappy_outbox") as url:
        yield url


async def test_two_drainers_start_each_row_once_and_each_users_rows_in_order(outbox_url: str) -> None:
    sessions = _sessions(outbox_url)
    users, per_user = 6, 4
    with sessions.begin() as s:
        for seq in range(per_user):
            for user in range(1, users + 1):
                row = outbox.enqueue(s, "fake", f"fake:{user}", user, json.dumps([user, seq]), 0)
                assert row.claimed == (seq == 0)
    with sessions.begin() as s:  # nothing is held by a request: every row is the drainers' to take
        for row in s.scalars(select(WorkflowOutbox)):
            row.next_attempt_at = row.created_at
    started: list[tuple[int, int]] = []
    failed_once: set[tuple[int, int]] = set()

    async def start(_client: Client, payload: str) -> None:
        user, seq = json.loads(payload)
        await asyncio.sleep(0)  # let the other drainer run between claim and completion
        if seq == 1 and (user, seq) not in failed_once:  # Temporal refuses it once: it holds back seq 2
            failed_once.add((user, seq))
            raise RuntimeError("unavailable")
        started.append((user, seq))

    fake_client = cast(Client, object())
    drainers = [
        OutboxDrainer(
            _sessions(outbox_url),
            lambda: fake_client,
            poll_seconds=0.05,
            retry_max_seconds=0.5,
            starters={"fake": start},
        )
        for _ in range(2)
    ]

    def left() -> int:
        with sessions() as s:
            return int(s.scalar(select(func.count()).select_from(WorkflowOutbox)) or 0)

    tasks = [asyncio.create_task(d.run()) for d in drainers]
    try:
        for _ in range(2400):  # a generous deadline (120 s) on the condition
            if not left():
                break
            await asyncio.sleep(0.05)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert left() == 0
    assert sorted(started) == sorted((u, q) for u in range(1, users + 1) for q in range(per_user))
    for user in range(1, users + 1):
        assert [q for u, q in started if u == user] == list(range(per_user))
    assert len(failed_once) == users


def test_queued_pushes_neither_wait_for_nor_hold_back_their_users_other_starts(outbox_url: str) -> None:
    sessions = _sessions(outbox_url)
    with sessions.begin() as s:
        push = outbox.enqueue(s, "push", "push:like:1:2", 7, "{}", 0)
        resign = outbox.enqueue(s, "resign", "resign:7", 7, "{}", 0)  # started by its request at once
        rename = outbox.enqueue(s, "rename", "nickname-change:7", 7, "{}", 0)
        late_push = outbox.enqueue(s, "push", "push:like:1:3", 7, "{}", 0)
    assert (push.claimed, resign.claimed, rename.claimed, late_push.claimed) == (True, True, False, True)
    with sessions.begin() as s:
        for row in s.scalars(select(WorkflowOutbox)):
            row.next_attempt_at = row.created_at
    # The resign first (ordered kinds go before pushes), both pushes beside it; the rename, queued after
    # the resign, still waits for it.
    with sessions.begin() as s:
        assert [r.id for r in outbox.claim_due(s, 60, 10)] == [resign.id, push.id, late_push.id]
    with sessions.begin() as s:
        outbox.done(s, resign.id)
    with sessions.begin() as s:
        assert [r.id for r in outbox.claim_due(s, 60, 10)] == [rename.id]
