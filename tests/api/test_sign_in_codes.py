"""Authorize codes at sign-in: the API redeems a code with its verifier before any workflow starts, a
refused code starts nothing, a wrong verifier burns nothing, and the code never reaches the database,
the workflow id or the history (issue 12 point 3)."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.deps import ActivityDeps
from storage.logins import authorize_code_hash, utcnow
from storage.models import AuthorizeCode
from temporal.ids import sign_in_workflow_id
from tests.api.sign_in_helpers import sign_in_runs
from tests.fixtures.ios_client import IOSClient, code_verifier


def _email() -> str:
    return f"c{uuid.uuid4().hex[:10]}@gmail.com"


def _code_row(deps: ActivityDeps, code: str) -> AuthorizeCode | None:
    with deps.sessions() as s:
        return s.get(AuthorizeCode, authorize_code_hash(code))


async def test_an_unknown_code_is_403_and_starts_no_workflow(
    http: httpx.Client, temporal_client: Client
) -> None:
    code = str(uuid.uuid4())
    resp = IOSClient(http).present_code(code, code_verifier(), _email())
    assert resp.status_code == 403 and resp.json()["message"] == "this authorize code is unknown"
    assert await sign_in_runs(temporal_client, code) == []


async def test_an_expired_code_is_403_and_starts_no_workflow(
    http: httpx.Client, temporal_client: Client, activity_deps: ActivityDeps
) -> None:
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    with activity_deps.sessions.begin() as s:
        s.execute(
            update(AuthorizeCode)
            .where(AuthorizeCode.code_hash == authorize_code_hash(code))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    resp = app.present_code(code, verifier, _email())
    assert resp.status_code == 403 and resp.json()["message"] == "this authorize code has expired"
    assert await sign_in_runs(temporal_client, code) == []
    row = _code_row(activity_deps, code)
    assert row is not None and row.consumed_at is None


async def test_a_used_code_is_403_and_starts_no_second_workflow(
    http: httpx.Client, temporal_client: Client
) -> None:
    app, verifier, email = IOSClient(http), code_verifier(), _email()
    code = app.authorize_code(verifier)
    assert app.present_code(code, verifier, email).status_code == 200
    [run] = await sign_in_runs(temporal_client, code)
    again = IOSClient(http).present_code(code, verifier, email)
    assert again.status_code == 403 and again.json()["message"] == "this authorize code was already used"
    assert await sign_in_runs(temporal_client, code) == [run]


async def test_a_wrong_verifier_is_403_and_does_not_burn_the_code(
    http: httpx.Client, temporal_client: Client, activity_deps: ActivityDeps
) -> None:
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    wrong = IOSClient(http).present_code(code, code_verifier(), _email())
    assert wrong.status_code == 403
    assert wrong.json()["message"] == "the code verifier does not match this authorize code"
    assert await sign_in_runs(temporal_client, code) == []
    row = _code_row(activity_deps, code)
    assert row is not None and row.consumed_at is None
    assert app.present_code(code, verifier, _email()).status_code == 200
    row = _code_row(activity_deps, code)
    assert row is not None and row.consumed_at is not None


def test_one_code_presented_concurrently_signs_in_once(http: httpx.Client) -> None:
    app, verifier, email = IOSClient(http), code_verifier(), _email()
    code = app.authorize_code(verifier)
    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(
            pool.map(lambda _: IOSClient(http).present_code(code, verifier, email).status_code, range(6))
        )
    assert statuses == [200, 403, 403, 403, 403, 403]


async def test_the_code_and_verifier_reach_neither_database_nor_workflow(
    http: httpx.Client, temporal_client: Client, activity_deps: ActivityDeps
) -> None:
    app, verifier = IOSClient(http), code_verifier()
    code = app.authorize_code(verifier)
    with activity_deps.sessions() as s:
        stored = list(s.scalars(select(AuthorizeCode.code_hash).where(AuthorizeCode.code_hash.in_([code]))))
    assert stored == [] and _code_row(activity_deps, code) is not None  # kept as its hash only
    assert app.present_code(code, verifier, _email()).status_code == 200

    workflow_id = sign_in_workflow_id(code)
    assert code not in workflow_id and workflow_id.startswith("sign-in:")
    handle = temporal_client.get_workflow_handle(workflow_id)
    assert (await handle.describe()).status is not None
    history = await handle.fetch_history()
    started = history.events[0]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    [payload] = started.workflow_execution_started_event_attributes.input.payloads
    # Encrypted in the history; the client's own codec opens it.
    assert temporal_client.data_converter.payload_codec is not None
    [plain] = await temporal_client.data_converter.payload_codec.decode([payload])
    sent = json.loads(plain.data)
    assert sent["authorize_code"] == "" and sent["code_verifier"] == ""
    # Only the stored request's id and non-secret options (issue 14): nothing the client sent.
    assert {k for k, v in sent.items() if v} == {"request_id", "provider", "refresh_ttl_seconds"}
    everything = history.to_json()
    assert code not in everything and verifier not in everything
