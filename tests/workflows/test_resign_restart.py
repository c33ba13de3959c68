"""A resign whose run an operator terminated (here while its Apple step keeps failing against the
emulator) is started again by the next housekeeping run and completes: the account row and its entries
go. Until then the account stays half-deleted: hidden, its logins revoked, and the user cannot ask
again (their token is revoked: 403), so nothing but housekeeping would finish it. An account an
operator marked held (``users.RESIGN_HELD_PREFIX``) is left stopped. The housekeeping run records the
replay history `housekeeping_with_resign_restarts`."""

from __future__ import annotations

import asyncio
import base64
import uuid

import httpx
import pytest
from sqlalchemy import select, update
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.deps import ActivityDeps
from emulators.control import AppleEmulator
from storage import users
from storage.models import Feed, User
from temporal.accounts import ResignResult
from temporal.ids import resign_workflow_id
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.waiting import eventually
from tests.workflows.test_housekeeping import triggered_run
from tests.workflows.test_resign import _feed, _member, _user_id

pytestmark = pytest.mark.usefixtures("worker")


def _apple_member(http: httpx.Client, deps: ActivityDeps, apple: AppleEmulator) -> tuple[IOSClient, int]:
    code, sub = f"restart-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:8]}"
    email = f"{sub}@icloud.com"
    apple.register_code(code, sub=sub, email=email)
    authorization_code = base64.b64encode(code.encode()).decode()
    app, nick = _member(http, email, provider="apple", provider_id=sub, authorization_code=authorization_code)
    user_id = _user_id(deps, nick)
    _feed(deps, user_id, 20240301)
    return app, user_id


async def _stalled_at_apple(app: IOSClient, client: Client, user_id: int) -> WorkflowHandle:
    assert app.post_multipart("/auth-service/resign", [("email", app.email)]).status_code == 200
    handle = client.get_workflow_handle(resign_workflow_id(user_id))

    async def retrying_apple() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return (
            bool(pending)
            and pending[0].activity_type.name.endswith("apple_of_user")
            and pending[0].attempt > 1
        )

    await eventually(retrying_apple, "the resign retrying its Apple step", deadline_seconds=120)
    return handle


def _row_and_feeds(deps: ActivityDeps, user_id: int) -> tuple[str | None, int]:
    with deps.sessions() as s:
        user = s.get(User, user_id)
        feeds = s.scalars(select(Feed.id).where(Feed.user_id == user_id)).all()
        return (None if user is None else user.account_email), len(feeds)


async def test_housekeeping_finishes_a_terminated_resign_but_not_a_held_one(
    http: httpx.Client, activity_deps: ActivityDeps, temporal_client: Client, apple_emulator: AppleEmulator
) -> None:
    (app, user_id), (held_app, held_id) = (
        _apple_member(http, activity_deps, apple_emulator) for _ in range(2)
    )
    apple_emulator.fail("revoke", 503)
    stopped = await _stalled_at_apple(app, temporal_client, user_id)
    held = await _stalled_at_apple(held_app, temporal_client, held_id)
    with activity_deps.sessions.begin() as s:  # the runbook's hold, before the operator's terminate
        s.execute(
            update(User)
            .where(User.id == held_id)
            .values(account_email=f"{users.RESIGN_HELD_PREFIX}{held_id}")
        )
    await stopped.terminate(reason="operator")
    await held.terminate(reason="operator")
    apple_emulator.reset()

    # Half-deleted and stuck: the row and entries are there, and the user cannot resign again.
    assert await asyncio.to_thread(_row_and_feeds, activity_deps, user_id) == (f"resigning:{user_id}", 1)
    assert app.post_multipart("/auth-service/resign", [("email", app.email)]).status_code == 403

    result = await triggered_run(temporal_client, record_as="housekeeping_with_resign_restarts")

    assert result.resigns_restarted >= 1
    restarted = temporal_client.get_workflow_handle(resign_workflow_id(user_id), result_type=ResignResult)
    done = await asyncio.wait_for(restarted.result(), timeout=120)
    assert done.feeds_deleted == 1
    assert await asyncio.to_thread(_row_and_feeds, activity_deps, user_id) == (None, 0)
    # The held one stays as the operator left it: its terminated run is still the last.
    assert (await held.describe()).status == WorkflowExecutionStatus.TERMINATED
    held_row = f"{users.RESIGN_HELD_PREFIX}{held_id}"
    assert await asyncio.to_thread(_row_and_feeds, activity_deps, held_id) == (held_row, 1)
