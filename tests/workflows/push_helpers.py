"""Users with registered devices, made directly in the test database, for push tests: each device is
registered by its own live login, as a sign-in registers it (a device whose login is over gets no push)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.deps import ActivityDeps
from storage import devices, logins, users
from tests.fixtures.waiting import eventually


def user_with_devices(deps: ActivityDeps, count: int, nickname: str | None = None) -> tuple[int, list[str]]:
    """A new user with ``count`` registered device tokens, each of its own live login (and ``nickname``,
    if given)."""
    tag = uuid.uuid4().hex[:10]
    tokens = [f"tok-{tag}-{i}" for i in range(count)]
    with deps.sessions.begin() as session:
        user = users.upsert_account(session, f"{tag}@example.com+kakao", "kakao", tag, None)
        if nickname is not None:
            user.nickname = nickname
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
