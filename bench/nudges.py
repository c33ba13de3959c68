"""Nudge fan-out: one ``DailyReminderWorkflow`` run reminding N users (one push workflow each, started by
one activity per batch of ``SOSOHAPPY_NUDGE_BATCH_SIZE``, continuing as new every ten batches), in pushes/s
from the run's start to the N-th message at the FCM emulator, against ``bench.push``'s no-op ceiling (a
no-op workflow with one no-op activity at 32 in flight) measured on the same dev server in the same run.
Target: fan-out >= 0.8 x the ceiling.

    .venv/bin/python -m bench.nudges --n 10000

Starts its own Temporal dev server (configured as the project runs it), FCM emulator and SQLite database
on free ports / a temp folder; quiet hours are off so the run sends at any hour.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import time as clock_time
from datetime import timedelta

from sqlalchemy import insert, select

from activities.deps import ActivityDeps
from bench.cli import stop_on_sigterm
from bench.devserver import noop_ceiling
from bench.push import CONCURRENCY, push_stack, say
from devstack.bytecode import compile_project
from emulators.control import FcmEmulator
from storage.logins import utcnow
from storage.models import DeviceRegistration, LoginSession, User
from temporal.client import connect
from temporal.nudges import NudgeResult, NudgeRun
from temporal.task_queues import PUSH, named
from workers.main import build_workers
from workflows.nudges import DailyReminderWorkflow


def seed(deps: ActivityDeps, n: int) -> None:
    """N users, each signed in on one device (a live login that registered its token)."""
    now = utcnow()
    with deps.sessions.begin() as session:
        session.execute(
            insert(User),
            [
                {
                    "account_email": f"nudge{i}@example.com+kakao",
                    "provider": "kakao",
                    "introduction": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )
        ids = list(session.scalars(select(User.id).order_by(User.id)))
        logins = [str(uuid.uuid4()) for _ in ids]
        session.execute(
            insert(LoginSession),
            [
                {
                    "id": login,
                    "user_id": user,
                    "generation": 0,
                    "created_at": now,
                    "expires_at": now + timedelta(days=14),
                }
                for user, login in zip(ids, logins, strict=True)
            ],
        )
        session.execute(
            insert(DeviceRegistration),
            [
                {
                    "user_id": user,
                    "session_id": login,
                    "token": f"nudge-token-{user}",
                    "created_at": now,
                    "updated_at": now,
                }
                for user, login in zip(ids, logins, strict=True)
            ],
        )


async def run(n: int, ceiling_n: int) -> None:
    """Start the servers, measure the ceiling and the fan-out, print rates and the ratio."""
    with push_stack(
        "bench-nudges-", nudge_quiet_start=clock_time(0), nudge_quiet_end=clock_time(0)
    ) as settings:
        deps = ActivityDeps.open(settings)
        say(f"seeding {n} users signed in on one device each")
        seed(deps, n)
        client = await connect(settings)
        emulator = FcmEmulator(settings.fcm_endpoint or "")
        with ThreadPoolExecutor(64) as executor:
            workers = build_workers(client, deps, executor)
            runs = [asyncio.create_task(w.run()) for w in workers]

            say(f"(ceiling) {ceiling_n} no-op workflows with one no-op activity, {CONCURRENCY} in flight")
            ceiling = (await noop_ceiling(client, ceiling_n, CONCURRENCY)).rate

            emulator.reset()
            say(f"(fan-out) one DailyReminderWorkflow run for {n} users")
            started = time.perf_counter()
            handle = await client.start_workflow(
                DailyReminderWorkflow.run,
                NudgeRun(),
                id=f"bench-reminder-{uuid.uuid4().hex[:6]}",
                task_queue=named(PUSH, settings.temporal_task_queue_prefix),
            )
            result: NudgeResult = await handle.result()
            fanned = time.perf_counter() - started
            say(
                f"  run done in {fanned:.1f}s: {result.tally.started} pushes started in {result.tally.runs} runs"
            )
            delivered = 0
            while delivered < result.tally.started:
                await asyncio.sleep(1)
                delivered = len(emulator.messages())
            elapsed = time.perf_counter() - started
            for w in workers:
                await w.shutdown()
            await asyncio.gather(*runs, return_exceptions=True)
        deps.close()
    rate = delivered / elapsed
    say("")
    say(f"results (n={n}, batch {settings.nudge_batch_size}, {delivered} pushes at the emulator):")
    say(f"  no-op workflow + activity (ceiling) {ceiling:8.1f} /s  ({CONCURRENCY} in flight)")
    say(f"  reminder fan-out                    {rate:8.1f} /s  ({elapsed:.1f}s to the last push)")
    verdict = "met" if rate >= 0.8 * ceiling else "NOT met"
    say(f"  fan-out / ceiling = {rate / ceiling:.2f}   (target >= 0.80: {verdict})")


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.nudges",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, default=10_000, help="users to remind")
    parser.add_argument("--ceiling-n", type=int, default=500, help="no-op workflows for the ceiling")
    args = parser.parse_args()
    stop_on_sigterm()
    compile_project()  # the workers here re-import workflow modules per run (devstack.bytecode)
    asyncio.run(run(args.n, args.ceiling_n))


if __name__ == "__main__":
    main()
