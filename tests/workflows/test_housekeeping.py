"""Housekeeping deletes exactly what no longer means anything, in batches, from its hourly Schedule.

Rows of each kind, stale and live, go into the session's MySQL database; the schedule the test fixtures
created is triggered and its run's result read; only the stale rows are gone. The run records the replay
history `housekeeping_scheduled_without_input` (``recording.record_if_asked``; the schedule starts it with
no input)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleOverlapPolicy

from activities.deps import ActivityDeps
from config import Settings
from storage import housekeeping as store
from storage.logins import utcnow
from storage.models import (
    AuthorizeCode,
    DeviceRegistration,
    DmPresence,
    FeedPageMark,
    LoginSession,
    Revocation,
    User,
)
from temporal.housekeeping import SCHEDULE_ID, WORKFLOW_TYPE, HousekeepingResult, ensure_schedule
from tests.fixtures.app import BackgroundWorker
from tests.workflows.recording import record_if_asked

DAY = timedelta(days=1)


def _user(deps: ActivityDeps) -> int:
    now = utcnow()
    with deps.sessions.begin() as s:
        result = s.execute(
            insert(User).values(
                account_email=f"{uuid.uuid4().hex}@example.com+kakao",
                provider="kakao",
                introduction="",
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])


def _rows(deps: ActivityDeps, settings: Settings) -> dict[str, dict[str, list[str]]]:
    """Stale and live rows of each kind; each kind's keys as strings."""
    now, user, other = utcnow(), _user(deps), _user(deps)
    tag = uuid.uuid4().hex[:20]
    access = timedelta(seconds=settings.access_token_ttl_seconds)

    def login(name: str, expires_at: datetime, revoked_at: datetime | None = None) -> dict[str, object]:
        return {
            "id": f"{tag}-{name}",
            "user_id": user,
            "generation": 0,
            "created_at": expires_at - 14 * DAY,
            "expires_at": expires_at,
            "revoked_at": revoked_at,
        }

    logins = {
        "stale": [login("expired", now - DAY), login("revoked-expired", now - DAY, now - 3 * DAY)],
        "live": [login("live", now + DAY), login("revoked-live", now + DAY, now - DAY)],
    }

    def code(name: str, expires_at: datetime, consumed_at: datetime | None = None) -> dict[str, object]:
        return {
            "code_hash": f"{tag}-{name}",
            "code_challenge": "c",
            "expires_at": expires_at,
            "consumed_at": consumed_at,
        }

    codes = {
        "stale": [
            code("expired", now - DAY),
            code("used", now + timedelta(minutes=10), now - timedelta(hours=1)),
        ],
        "live": [
            code("fresh", now + timedelta(minutes=10)),
            code("just-used", now + timedelta(minutes=9), now),
        ],
    }
    presence = {
        "stale": [{"replica_id": f"{tag}-dead", "user_id": user, "sockets": 1, "seen_at": now - DAY}],
        "live": [{"replica_id": f"{tag}-alive", "user_id": other, "sockets": 2, "seen_at": now}],
    }
    revocations = {
        "stale": [
            {"kind": "session", "subject": f"{tag}-old", "revoked_at": now - access - 2 * timedelta(hours=1)}
        ],
        "live": [
            {"kind": "session", "subject": f"{tag}-new", "revoked_at": now - access + timedelta(minutes=5)}
        ],
    }
    mark_life = timedelta(seconds=settings.feed_page_mark_ttl_seconds)

    def mark(page: int, recorded_at: datetime) -> dict[str, object]:
        return {
            "login_id": f"{tag}-{page}",
            "listing": "all",
            "scope": 0,
            "page": page,
            "date": 2024012017042712,
            "feed_id": 1,
            "recorded_at": recorded_at,
        }

    marks = {
        "stale": [mark(0, now - mark_life - timedelta(minutes=5))],
        "live": [mark(1, now - mark_life + timedelta(minutes=5))],
    }

    def device(name: str, session_id: str | None) -> dict[str, object]:
        return {
            "user_id": user,
            "session_id": session_id,
            "token": f"{tag}-{name}",
            "created_at": now,
            "updated_at": now,
        }

    registrations = {  # a device is live while the login that registered it is
        "stale": [
            device("of-revoked", f"{tag}-revoked-live"),
            device("of-expired", f"{tag}-expired"),
            device("of-no-login", None),
            device("of-gone-login", f"{tag}-gone"),
        ],
        "live": [device("of-live", f"{tag}-live")],
    }
    with deps.sessions.begin() as s:
        for model, rows in (
            (LoginSession, logins),
            (AuthorizeCode, codes),
            (DmPresence, presence),
            (Revocation, revocations),
            (FeedPageMark, marks),
            (DeviceRegistration, registrations),
        ):
            s.execute(insert(model), rows["stale"] + rows["live"])
    return {
        "login_sessions": {k: [str(r["id"]) for r in v] for k, v in logins.items()},
        "authorize_codes": {k: [str(r["code_hash"]) for r in v] for k, v in codes.items()},
        "dm_presence": {k: [str(r["replica_id"]) for r in v] for k, v in presence.items()},
        "revocations": {k: [str(r["subject"]) for r in v] for k, v in revocations.items()},
        "feed_page_marks": {k: [str(r["login_id"]) for r in v] for k, v in marks.items()},
        "device_registrations": {k: [str(r["token"]) for r in v] for k, v in registrations.items()},
    }


def _present(deps: ActivityDeps, keys: dict[str, dict[str, list[str]]]) -> dict[str, set[str]]:
    everything = {kind: [*v["stale"], *v["live"]] for kind, v in keys.items()}
    with deps.sessions() as s:
        return {
            "login_sessions": set(
                s.scalars(select(LoginSession.id).where(LoginSession.id.in_(everything["login_sessions"])))
            ),
            "authorize_codes": set(
                s.scalars(
                    select(AuthorizeCode.code_hash).where(
                        AuthorizeCode.code_hash.in_(everything["authorize_codes"])
                    )
                )
            ),
            "dm_presence": set(
                s.scalars(
                    select(DmPresence.replica_id).where(DmPresence.replica_id.in_(everything["dm_presence"]))
                )
            ),
            "revocations": set(
                s.scalars(select(Revocation.subject).where(Revocation.subject.in_(everything["revocations"])))
            ),
            "feed_page_marks": set(
                s.scalars(
                    select(FeedPageMark.login_id).where(
                        FeedPageMark.login_id.in_(everything["feed_page_marks"])
                    )
                )
            ),
            "device_registrations": set(
                s.scalars(
                    select(DeviceRegistration.token).where(
                        DeviceRegistration.token.in_(everything["device_registrations"])
                    )
                )
            ),
        }


async def _started_runs(client: Client) -> list[ScheduleActionExecutionStartWorkflow]:
    recent = (await client.get_schedule_handle(SCHEDULE_ID).describe()).info.recent_actions
    return [a.action for a in recent if isinstance(a.action, ScheduleActionExecutionStartWorkflow)]


async def triggered_run(client: Client, record_as: str | None = None) -> HousekeepingResult:
    """Trigger the schedule and wait for the run it started; its result.

    A scheduled run's id is the schedule's workflow id plus the trigger time to the second, so a second
    trigger within the same second as the last run would collide with that run's id and start nothing
    (Temporal drops it as already started). Before triggering, wait for the clock to pass the last run's
    second."""
    recent = (await client.get_schedule_handle(SCHEDULE_ID).describe()).info.recent_actions
    if recent:
        next_second = max(a.scheduled_at for a in recent).replace(microsecond=0) + timedelta(seconds=1)
        await asyncio.sleep(max(0.0, (next_second - datetime.now(UTC)).total_seconds()))
    before = {a.workflow_id for a in await _started_runs(client)}
    # ALLOW_ALL: a trigger is not skipped because an earlier test's run is still going (the schedule's
    # own policy, SKIP, would drop it).
    await client.get_schedule_handle(SCHEDULE_ID).trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    deadline = asyncio.get_running_loop().time() + 120
    while not (started := [a for a in await _started_runs(client) if a.workflow_id not in before]):
        assert asyncio.get_running_loop().time() < deadline, "the triggered schedule started no workflow"
        await asyncio.sleep(0.2)
    run = client.get_workflow_handle(
        started[0].workflow_id, run_id=started[0].first_execution_run_id, result_type=HousekeepingResult
    )
    result = await run.result()
    if record_as is not None:
        await record_if_asked(run, record_as)
    return result


async def test_a_triggered_run_deletes_exactly_the_stale_rows(
    settings: Settings, activity_deps: ActivityDeps, worker: BackgroundWorker, temporal_client: Client
) -> None:
    keys = await asyncio.to_thread(_rows, activity_deps, settings)

    result = await triggered_run(temporal_client, record_as="housekeeping_scheduled_without_input")

    present = await asyncio.to_thread(_present, activity_deps, keys)
    for kind, rows in keys.items():
        assert present[kind] == set(rows["live"]), kind
        assert getattr(result, kind) >= len(rows["stale"]), kind
    again = await triggered_run(temporal_client)  # idempotent: nothing of ours left to delete
    assert await asyncio.to_thread(_present, activity_deps, keys) == present
    assert again.model_dump().keys() == result.model_dump().keys()


def test_deletes_go_in_batches_until_one_is_short(activity_deps: ActivityDeps) -> None:
    tag = uuid.uuid4().hex[:20]
    long_ago = utcnow() - 400 * DAY
    with activity_deps.sessions.begin() as s:
        s.execute(
            insert(Revocation),
            [{"kind": "user", "subject": f"{tag}{i}", "revoked_at": long_ago} for i in range(7)],
        )
    batches: list[int] = []  # deleted so far, after each batch
    cutoff = long_ago + timedelta(seconds=1)  # only these records are that old
    assert store.delete_stale_revocations(activity_deps.sessions, cutoff, 3, batches.append) == 7
    assert batches == [3, 6, 7]  # the third batch is short: done
    assert store.delete_stale_revocations(activity_deps.sessions, cutoff, 3, batches.append) == 0


async def test_the_schedule_is_hourly_skips_overlaps_and_creating_it_again_changes_nothing(
    settings: Settings, worker: BackgroundWorker, temporal_client: Client
) -> None:
    handle = temporal_client.get_schedule_handle(SCHEDULE_ID)
    before = await handle.describe()
    assert await ensure_schedule(temporal_client, settings) is False  # the fixtures created it already
    assert await ensure_schedule(temporal_client, settings) is False
    after = await handle.describe()
    assert after.schedule == before.schedule  # paused state and note kept, the rest as defined
    assert after.schedule.state.paused
    (interval,) = after.schedule.spec.intervals
    assert interval.every == timedelta(hours=1)
    assert after.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
    action = after.schedule.action
    assert getattr(action, "workflow", None) == WORKFLOW_TYPE
    assert getattr(action, "task_queue", None) == f"{settings.temporal_task_queue_prefix}-accounts"
    ids = [s.id async for s in await temporal_client.list_schedules()]
    assert ids.count(SCHEDULE_ID) == 1
