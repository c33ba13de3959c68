"""Push throughput: N pushes through PushDeliveryWorkflow to the FCM emulator, against (a) N direct
firebase-admin sends to the same emulator, (b) N no-op workflows with one no-op activity on the same
Temporal dev server (configured as the project runs it, ``temporal.devserver``) and (c) the same on a
dev server with the CLI's default SQLite settings, all in one run. The pushes run twice as many rounds
with the payload codec on (AES-GCM, as deployed) and off, alternating, so the codec's cost is measured
on the same server in the same run.

    .venv/bin/python -m bench.push --n 200

Starts its own Temporal dev server, FCM emulator and SQLite database on free ports / a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from firebase_admin import messaging
from temporalio.client import Client

from activities.deps import ActivityDeps
from activities.firebase import firebase_app
from api.push import request_push
from bench.cli import stop_on_sigterm
from bench.devserver import dev_server, noop_ceiling
from config import Settings
from devstack.bytecode import compile_project
from devstack.processes import ManagedProcess, free_port
from emulators.control import FcmEmulator
from storage import devices, feeds, logins, users
from storage.db import migrate
from storage.feeds import NewEntry
from temporal.client import connect
from temporal.devserver import start_dev_args
from temporal.push import PushRequest, like_push
from temporal.task_queues import PUSH, named
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


#: The pushes run in this many rounds (codec on, off, on, off), each on a day of its own.
ROUNDS = 4
DAY = 2024012017042712


def seed(deps: ActivityDeps, n: int) -> list[int]:
    """N named users with one device each, registered by a live login (as a sign-in registers it)."""
    ids = []
    with deps.sessions.begin() as session:
        for i in range(n):
            user = users.upsert_account(session, f"bench{i}@example.com+kakao", "kakao", str(i), None)
            user.nickname = f"b{i}"
            login = logins.open_session(session, user.id, deps.settings.refresh_token_ttl_seconds)
            devices.register_device(session, user.id, f"bench-token-{i}", login.id)
            ids.append(user.id)
    return ids


def seed_likes(deps: ActivityDeps, user_ids: list[int], per_round: int) -> list[list[PushRequest]]:
    """Per round, ``per_round`` like pushes that are true when sent (the send activity checks): a public
    entry of user ``i`` on the round's day, liked by the first user."""
    liker, rounds = user_ids[0], []
    with deps.engine.begin() as conn:
        for round_ in range(ROUNDS):
            date = DAY + round_ * 10**8
            pushes = []
            for owner in user_ids[:per_round]:
                entry = NewEntry(owner, date, "sunny", 4, "bench", True, ("coffee",), ())
                feed_id, _ = feeds.save_entry(conn, entry)
                feeds.toggle_like(conn, feed_id, liker)
                pushes.append(like_push(feed_id, liker, owner, date))
            rounds.append(pushes)
    return rounds


@contextlib.contextmanager
def push_stack(prefix: str, **overrides: Any) -> Iterator[Settings]:
    """A Temporal dev server (configured as the project runs it) and the FCM emulator on free ports, and a
    migrated SQLite database, all in a new temp folder (``settings.data_dir``); the settings that reach
    them, with ``overrides``. Both servers stop on leaving."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    tport, fport = free_port(), free_port()
    say(f"starting Temporal dev server on :{tport} and FCM emulator on :{fport} (data in {work})")
    temporal = ManagedProcess(
        "temporal", start_dev_args(port=tport, ui_port=None, db_file=work / "t.db"), work / "temporal.log"
    )
    fcm = ManagedProcess(
        "fcm", [sys.executable, "-m", "emulators.fcm", "--port", str(fport)], work / "fcm.log"
    )
    try:
        temporal.start()
        fcm.start()
        temporal.wait_for_port(tport, timeout=90)
        fcm.wait_for_port(fport)
        settings = Settings(
            env="test",
            data_dir=work,
            database_url=f"sqlite:///{work / 'bench.db'}",
            temporal_address=f"127.0.0.1:{tport}",
            fcm_endpoint=f"http://127.0.0.1:{fport}",
            **overrides,
        )
        migrate(settings.sqlalchemy_url)
        yield settings
    finally:
        fcm.stop()
        temporal.stop()


async def run(n: int) -> None:
    """Start the servers, measure the three paths, print rates and ratios."""
    with push_stack("bench-push-") as settings:
        work = settings.data_dir
        deps = ActivityDeps.open(settings)
        say(f"seeding {n} users with one device each")
        user_ids = seed(deps, n)
        likes = seed_likes(deps, user_ids, n // 2)
        client: Client = await connect(settings)
        # The codec-off side on its own task queues, so neither side's worker sees the other's payloads.
        plain_settings = settings.model_copy(
            update={"temporal_payload_encryption": False, "temporal_task_queue_prefix": "plain"}
        )
        plain_client: Client = await connect(plain_settings)
        plain_deps = ActivityDeps.open(plain_settings)
        emulator = FcmEmulator(settings.fcm_endpoint or "")
        with ThreadPoolExecutor(64) as executor:
            workers = [
                *build_workers(client, deps, executor),
                *build_workers(plain_client, plain_deps, executor),
            ]
            runs = [asyncio.create_task(w.run()) for w in workers]

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
            noop_s = n / (await noop_ceiling(client, n, CONCURRENCY)).rate

            emulator.reset()
            push_s = {"on": 0.0, "off": 0.0}
            half = n // 2
            for round_ in range(ROUNDS):  # on, off, on, off: n pushes each way in all
                codec = "on" if round_ % 2 == 0 else "off"
                say(f"(push, codec {codec}) {half} pushes through PushDeliveryWorkflow")
                the_client = client if codec == "on" else plain_client
                queue = named(
                    PUSH, (settings if codec == "on" else plain_settings).temporal_task_queue_prefix
                )

                async def push(
                    i: int, c: Client = the_client, q: str = queue, reqs: list[PushRequest] = likes[round_]
                ) -> object:
                    req = reqs[i]
                    await request_push(c, req, q)
                    return await c.get_workflow_handle(req.workflow_id).result()

                push_s[codec] += await bounded(half, push)
            delivered = len(emulator.messages())
            for w in workers:
                await w.shutdown()
            await asyncio.gather(*runs, return_exceptions=True)
        deps.close()
        plain_deps.close()
    say(f"(c) {n} no-op workflows with one no-op activity on a default-configured dev server")
    async with dev_server(work, "default", pragmas=()) as default_client:
        default_s = n / (await noop_ceiling(default_client, n, CONCURRENCY)).rate

    pushes = 2 * (n // 2)
    rate = {name: n / secs for name, secs in (("direct", direct_s), ("noop", noop_s), ("default", default_s))}
    rate["push"] = pushes / push_s["on"]
    rate["push_plain"] = pushes / push_s["off"]
    say("")
    say(
        f"results (n={n}, {CONCURRENCY} in flight, {delivered} of {2 * pushes} pushes recorded by the "
        "emulator):"
    )
    say(f"  (a) direct firebase-admin sends  {rate['direct']:8.1f} /s")
    say(f"  (b) no-op workflow + activity    {rate['noop']:8.1f} /s  (dev server as configured)")
    say(f"  (c) no-op workflow + activity    {rate['default']:8.1f} /s  (dev server with the CLI's defaults)")
    say(f"  push workflows, codec on         {rate['push']:8.1f} /s  (as deployed)")
    say(f"  push workflows, codec off        {rate['push_plain']:8.1f} /s")
    verdict = "met" if rate["push"] >= 0.9 * rate["push_plain"] else "NOT met"
    say(f"  codec on / off = {rate['push'] / rate['push_plain']:.2f}   (target >= 0.90: {verdict})")
    verdict = "met" if rate["push"] >= 0.9 * rate["noop"] else "NOT met"
    say(f"  push / (b) = {rate['push'] / rate['noop']:.2f}   (target >= 0.90: {verdict})")
    verdict = "met" if rate["noop"] >= 1.8 * rate["default"] else "NOT met"
    say(f"  (b) / (c) = {rate['noop'] / rate['default']:.2f}   (target >= 1.80: {verdict})")
    say(f"  push / (a) = {rate['push'] / rate['direct']:.2f}")
    if delivered != 2 * pushes:  # a push that was not sent was not measured: the rates above mean nothing
        sys.exit(
            f"only {delivered} of {2 * pushes} pushes reached the emulator: the push rates are not valid"
        )


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.push", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=200, help="N: pushes, direct sends and no-op workflows each (default 200)"
    )
    n = parser.parse_args().n
    stop_on_sigterm()
    compile_project()  # the workers here re-import workflow modules per run (devstack.bytecode)
    asyncio.run(run(n))


if __name__ == "__main__":
    main()
