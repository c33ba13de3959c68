"""Push throughput: N pushes through PushDeliveryWorkflow to the FCM emulator, against (a) N direct
firebase-admin sends to the same emulator and (b) N no-op workflows with one no-op activity on the same
Temporal dev server, all in one run; the pushes run twice, with the payload encryption codec off and on
(workers and client of each kind in turn), for the codec's cost.

    .venv/bin/python -m bench.push --n 200

Starts its own Temporal dev server, FCM emulator and SQLite database on free ports / a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from firebase_admin import messaging
from temporalio.client import Client
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.firebase import firebase_app
from api.push import request_push
from bench.noop_workflow import NoopWorkflow, noop_activity
from config import Settings
from devstack.processes import ManagedProcess, free_port
from emulators.control import FcmEmulator
from storage import devices, users
from storage.db import migrate
from temporal.client import connect
from temporal.devserver import start_dev_args
from temporal.push import like_push
from workers.main import build_workers

CONCURRENCY = 32


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


async def bounded(n: int, make: Callable[[int], Awaitable[object]]) -> float:
    """Run ``make(i)`` for i < n with at most CONCURRENCY in flight; returns elapsed seconds."""
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


def seed(deps: ActivityDeps, n: int) -> list[int]:
    """N users with one device each."""
    ids = []
    with deps.sessions.begin() as session:
        for i in range(n):
            user = users.upsert_account(session, f"bench{i}@example.com+kakao", "kakao", str(i), None)
            devices.register_device(session, user.id, f"bench-token-{i}", None)
            ids.append(user.id)
    return ids


async def run(n: int) -> None:
    """Start the servers, measure the three paths, print rates and ratios."""
    work = Path(tempfile.mkdtemp(prefix="bench-push-"))
    tport, fport = free_port(), free_port()
    say(f"starting Temporal dev server on :{tport} and FCM emulator on :{fport} (data in {work})")
    temporal = ManagedProcess(
        "temporal", start_dev_args(port=tport, ui_port=None, db_file=work / "t.db"), work / "temporal.log"
    ).start()
    fcm = ManagedProcess(
        "fcm", [sys.executable, "-m", "emulators.fcm", "--port", str(fport)], work / "fcm.log"
    ).start()
    try:
        temporal.wait_for_port(tport, timeout=90)
        fcm.wait_for_port(fport)
        settings = Settings(
            env="test",
            data_dir=work,
            database_url=f"sqlite:///{work / 'bench.db'}",
            temporal_address=f"127.0.0.1:{tport}",
            fcm_endpoint=f"http://127.0.0.1:{fport}",
        )
        migrate(settings.sqlalchemy_url)
        deps = ActivityDeps.open(settings)
        say(f"seeding {n} users with one device each")
        user_ids = seed(deps, n)
        client: Client = await connect(settings)
        plain_client = await connect(settings.model_copy(update={"temporal_payload_encryption": False}))
        emulator = FcmEmulator(settings.fcm_endpoint or "")
        with ThreadPoolExecutor(64) as executor:
            noop_queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
            noop_worker = Worker(
                client,
                task_queue=noop_queue,
                workflows=[NoopWorkflow],
                activities=[noop_activity],
                activity_executor=executor,
            )
            noop_run = asyncio.create_task(noop_worker.run())

            say(f"(a) {n} direct firebase-admin sends to the emulator")
            app = firebase_app(settings)
            loop = asyncio.get_running_loop()

            def direct_send(i: int) -> Awaitable[object]:
                message = messaging.Message(
                    token=f"direct-{i}", notification=messaging.Notification(title="t", body="b")
                )
                return loop.run_in_executor(executor, lambda: messaging.send(message, app=app))

            direct_s = await bounded(n, direct_send)

            say(f"(b) {n} no-op workflows with one no-op activity")
            tag = uuid.uuid4().hex[:6]

            async def noop(i: int) -> object:
                return await client.execute_workflow(
                    NoopWorkflow.run, i, id=f"noop-{tag}-{i}", task_queue=noop_queue
                )

            noop_s = await bounded(n, noop)

            emulator.reset()
            push_s: dict[str, float] = {}
            # Codec off first: whatever the server warms up favours the encrypted run, not the baseline.
            for label, push_client, first_feed in (("off", plain_client, 10_000), ("on", client, 20_000)):
                say(f"(push, codec {label}) {n} pushes through PushDeliveryWorkflow")
                push_s[label] = await pushes(push_client, deps, executor, user_ids, first_feed)
            delivered = len(emulator.messages())
            await noop_worker.shutdown()
            await noop_run
        deps.close()
    finally:
        fcm.stop()
        temporal.stop()

    rate = {"direct": n / direct_s, "noop": n / noop_s, "push": n / push_s["on"], "plain": n / push_s["off"]}
    say("")
    say(f"results (n={n}, {CONCURRENCY} in flight, {delivered} of {2 * n} pushes recorded by the emulator):")
    say(f"  (a) direct firebase-admin sends  {rate['direct']:8.1f} /s")
    say(f"  (b) no-op workflow + activity    {rate['noop']:8.1f} /s   (codec on)")
    say(f"  push workflows, codec off        {rate['plain']:8.1f} /s")
    say(f"  push workflows, codec on         {rate['push']:8.1f} /s")
    say(f"  push / (b) = {rate['push'] / rate['noop']:.2f}   (target >= 0.70)")
    say(f"  push / (a) = {rate['push'] / rate['direct']:.2f}")
    say(f"  codec on / off = {rate['push'] / rate['plain']:.2f}   (target >= 0.90)")


async def pushes(
    client: Client, deps: ActivityDeps, executor: ThreadPoolExecutor, user_ids: list[int], first_feed: int
) -> float:
    """Seconds for one like push per user through the project's workers running on ``client``."""
    workers = build_workers(client, deps, executor)
    runs = [asyncio.create_task(w.run()) for w in workers]

    async def push(i: int) -> object:
        req = like_push(first_feed + i, 1, "bench", user_ids[i], "owner", 2024012017042712)
        await request_push(client, req)
        return await client.get_workflow_handle(req.workflow_id).result()

    try:
        return await bounded(len(user_ids), push)
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*runs, return_exceptions=True)


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(run(parser.parse_args().n))


if __name__ == "__main__":
    main()
