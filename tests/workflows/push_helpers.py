"""Users with registered devices, made directly in the test database, for push tests: each device is
registered by its own live login, as a sign-in registers it (a device whose login is over gets no push)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from storage import devices, feeds, logins, users
from storage.feeds import NewEntry
from storage.models import User
from temporal.push import PushRequest, like_push
from tests.fixtures.waiting import eventually
from tests.workflows.time_skipping import time_skipping_env
from workflows.push import PushDeliveryWorkflow


def user_with_devices(deps: ActivityDeps, count: int, nickname: str | None = None) -> tuple[int, list[str]]:
    """A new user with ``count`` registered device tokens, each of its own live login (and ``nickname``,
    if given)."""
    tag = uuid.uuid4().hex[:10]
    tokens = [f"tok-{tag}-{i}" for i in range(count)]
    with deps.sessions.begin() as session:
        user = users.upsert_account(session, f"{tag}@example.com+kakao", "kakao", tag, None)
        if nickname is not None:
            users.set_nickname(user, nickname)
        for token in tokens:
            login = logins.open_session(session, user.id, deps.settings.refresh_token_ttl_seconds)
            devices.register_device(session, user.id, token, login.id)
        return user.id, tokens


def tokens_of(deps: ActivityDeps, user_id: int) -> list[str]:
    """The tokens still registered for ``user_id``."""
    with deps.sessions() as session:
        return devices.tokens_for(session, user_id)


def device_ids_by_token(deps: ActivityDeps, user_id: int) -> dict[str, str]:
    """Each registered token of ``user_id`` with its registration id as push outcomes list it (text)."""
    with deps.sessions() as session:
        ids = devices.ids_for(session, user_id)
        return {devices.token_of(session, i, user_id) or "": str(i) for i in ids}


def named_user(deps: ActivityDeps, prefix: str) -> tuple[int, str]:
    """A new user (no device) with a unique nickname starting with ``prefix``."""
    nickname = f"{prefix}{uuid.uuid4().hex[:6]}"
    user_id, _ = user_with_devices(deps, 0, nickname)
    return user_id, nickname


async def push_result(client: Client, workflow_id: str, result_type: type | None = None) -> Any:
    """The result of the push workflow ``workflow_id``, once the API's background start has started it
    (the API answers before it starts the push)."""

    async def started() -> bool:
        try:
            await client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    await eventually(started, f"{workflow_id} started")
    return await client.get_workflow_handle(workflow_id, result_type=result_type).result()


def liked_entry(
    deps: ActivityDeps, owner: int, date: int = 2024012017042712, is_public: bool = True
) -> tuple[int, int, str]:
    """A public entry of ``owner`` on ``date``'s day liked by a new named user: ``(feed id, liker id,
    liker nickname)`` (what a like push is about, as it is when the push is sent)."""
    liker, liker_nickname = named_user(deps, "liker")
    with deps.sessions.begin() as session:  # an entry's author has a nickname (saveFeed needs one), and
        author = session.get(User, owner)  # other tests list every public entry with its author's
        assert author is not None
        if author.nickname is None:
            author.nickname = f"o{uuid.uuid4().hex[:7]}"
    entry = NewEntry(
        user_id=owner,
        date=date,
        weather="sunny",
        happiness=4,
        text="친구랑 카페에서 수다",
        is_public=is_public,
        categories=("coffee",),
        images=(),
    )
    with deps.engine.begin() as conn:
        feed_id, _ = feeds.save_entry(conn, entry)
        assert feeds.toggle_like(conn, feed_id, liker)
    return feed_id, liker, liker_nickname


def liked_push(deps: ActivityDeps, owner: int, date: int = 2024012017042712) -> PushRequest:
    """The like push of a new like on a public entry of ``owner`` (``liked_entry``)."""
    feed_id, liker, _ = liked_entry(deps, owner, date)
    return like_push(feed_id, liker, owner, date)


@asynccontextmanager
async def time_skipping_push_worker(activities: list[Any]) -> AsyncIterator[tuple[Client, str]]:
    """A time-skipping server and a worker of ``PushDeliveryWorkflow`` with ``activities``, on a task
    queue of its own: ``(client, task queue)``."""
    queue = f"push-{uuid.uuid4()}"
    async with time_skipping_env() as env:
        with ThreadPoolExecutor(8) as executor:
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[PushDeliveryWorkflow],
                activity_executor=executor,
                activities=activities,
            ):
                yield env.client, queue
