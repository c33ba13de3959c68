"""Sign-in and authentication benchmark, every figure beside its baseline from the same run.

    .venv/bin/python -m bench.signin

1. Sign-ins through HTTP + SignInWorkflow (API and worker processes) vs the same steps without Temporal
   (``bench.signin_baseline``), at 5 and 20 concurrent clients: rate, p50, p99; and the p99 of a no-op
   workflow with one activity at 20 concurrent on the same Temporal server.
2. Authenticated requests/s with the Kafka-fed revocation view vs a database lookup per request.
3. The payload encryption codec's cost: sign-ins at 20 concurrent with the codec off (a worker and an API
   process without it), then on (the same processes with it), in that order.

Starts its own Temporal dev server, broker, MongoDB-wire server and processes on free ports, with a
throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pymysql
from sqlalchemy.engine import make_url
from temporalio.worker import Worker

from bench.noop_workflow import NoopWorkflow, noop_activity
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port, mongo_argv
from storage import logins
from storage.db import create_db_engine, migrate, session_factory
from temporal.client import connect
from temporal.codec import generate_key_entry
from temporal.devserver import start_dev_args


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(n: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run ``call(i)`` n times with ``concurrency`` in flight: (rate per second, latencies)."""
    latencies: list[float] = []
    queue = iter(range(n))

    async def client() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return n / (time.perf_counter() - t0), latencies


def throwaway_mysql() -> tuple[str, Callable[[], None]]:
    """A new MySQL database and a function that drops it."""
    base = make_url(os.environ.get("SOSOHAPPY_TEST_DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/"))
    name = f"sosohappy_bench_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(
        host=base.host,
        port=base.port or 3306,
        user=base.username or "root",
        password=base.password or "",
        autocommit=True,
    )
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return base.set(database=name).render_as_string(hide_password=False), lambda: conn.cursor().execute(
        f"DROP DATABASE `{name}`"
    )


async def run() -> None:
    """Start everything, measure, print."""
    work = Path(tempfile.mkdtemp(prefix="bench-signin-"))
    db_url, drop_db = throwaway_mysql()
    migrate(db_url)
    ports = {
        name: free_port()
        for name in ("temporal", "kafka", "mongo", "api_view", "api_db", "baseline", "api_plain", "worker")
    }
    env = {
        "SOSOHAPPY_ENV": "test",
        "SOSOHAPPY_DATABASE_URL": db_url,
        "SOSOHAPPY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "SOSOHAPPY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "SOSOHAPPY_MONGO_URL": f"mongodb://127.0.0.1:{ports['mongo']}",
        "SOSOHAPPY_WORKER_METRICS_PORT": "0",
        # No SDK metrics: the default port may be taken by a dev stack running beside the benchmark.
        "SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT": "0",
        # Hundreds of sign-ins from 127.0.0.1 are the point here, not what the per-IP limit is for.
        "SOSOHAPPY_SIGN_IN_RATE_LIMIT_PER_MINUTE": "0",
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": generate_key_entry("bench"),
    }
    py = sys.executable
    uvicorn = [py, "-m", "uvicorn", "--http", "h11", "--log-level", "warning", "--no-access-log"]
    procs = [
        ManagedProcess(
            "temporal",
            start_dev_args(port=ports["temporal"], ui_port=None, db_file=work / "t.db"),
            work / "temporal.log",
        ),
        ManagedProcess("kafka", broker_argv(ports["kafka"]), work / "kafka.log"),
        ManagedProcess("mongo", mongo_argv(ports["mongo"], work / "mongo"), work / "mongo.log"),
    ]
    try:
        say(f"starting Temporal, Kafka, MongoDB-wire servers (logs in {work})")
        for proc, port in zip(procs, (ports["temporal"], ports["kafka"], ports["mongo"]), strict=True):
            proc.start().wait_for_port(port, timeout=90)
        say("starting the worker, two API processes (revocation view on / off) and the baseline app")
        apps = [
            ("worker", [py, "-m", "workers.main"], {}, None),
            (
                "api_view",
                [*uvicorn, "api.main:app", "--factory", "--port", str(ports["api_view"])],
                {},
                "api_view",
            ),
            (
                "api_db",
                [*uvicorn, "api.main:app", "--factory", "--port", str(ports["api_db"])],
                {"SOSOHAPPY_REVOCATION_VIEW_ENABLED": "false"},
                "api_db",
            ),
            (
                "baseline",
                [*uvicorn, "bench.signin_baseline:app", "--port", str(ports["baseline"])],
                {},
                "baseline",
            ),
        ]
        for name, argv, extra, port_name in apps:
            proc = ManagedProcess(name, argv, work / f"{name}.log", env={**env, **extra}).start()
            procs.append(proc)
            if port_name:
                proc.wait_for_port(ports[port_name])
        for port_name in ("api_view", "api_db"):
            await wait_ready(ports[port_name])
        results = await measure(db_url, env, ports)

        async def restart_worker(encrypted: bool) -> None:
            """Replace the worker by one with the codec on or off, and wait until it polls."""
            for proc in [p for p in procs if p.name == "worker"]:
                proc.stop()
                procs.remove(proc)
            extra = {
                "SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION": str(encrypted).lower(),
                "SOSOHAPPY_WORKER_METRICS_PORT": str(ports["worker"]),
            }
            proc = ManagedProcess(
                "worker", [py, "-m", "workers.main"], work / "worker.log", env={**env, **extra}
            )
            procs.append(proc.start())
            await wait_ready(ports["worker"])

        say("codec off: a worker and an API process without payload encryption")
        await restart_worker(False)
        plain_api = ManagedProcess(
            "api_plain",
            [*uvicorn, "api.main:app", "--factory", "--port", str(ports["api_plain"])],
            work / "api_plain.log",
            env={**env, "SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION": "false"},
        )
        procs.append(plain_api.start())
        plain_api.wait_for_port(ports["api_plain"])
        await wait_ready(ports["api_plain"])
        results["codec-off@20"] = await sign_ins(db_url, ports["api_plain"], "/auth-service/signIn", 300, 20)
        plain_api.stop()
        say("codec on: the worker and the API process with payload encryption")
        await restart_worker(True)
        results["codec-on@20"] = await sign_ins(db_url, ports["api_view"], "/auth-service/signIn", 300, 20)
        off, on = results["codec-off@20"], results["codec-on@20"]
        say("payload encryption codec (sign-ins, 300 at 20 concurrent; rate /s, p50 ms, p99 ms):")
        for key, (rate, lat) in (("codec off", off), ("codec on", on)):
            say(f"  {key:12s} {rate:7.1f}/s  p50 {pct(lat, 0.5):7.1f}  p99 {pct(lat, 0.99):7.1f}")
        say(f"  codec on / off = {on[0] / off[0]:.2f}   (target >= 0.90)")
    finally:
        for proc in reversed(procs):
            proc.stop()
        drop_db()


async def wait_ready(port: int) -> None:
    """Until ``127.0.0.1:port/readyz`` answers 200 (at most 20 s)."""
    async with httpx.AsyncClient() as probe:
        for _ in range(200):
            try:
                if (await probe.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


VERIFIER = "k3PqZ8aLw0mT9xRb2VdN"


def codes(db_url: str, n: int) -> list[str]:
    """N fresh authorize codes for ``VERIFIER``."""
    challenge = hashlib.sha512(VERIFIER.encode()).hexdigest()
    engine = create_db_engine(db_url)
    try:
        with session_factory(engine).begin() as s:
            return [logins.create_authorize_code(s, challenge, 600) for _ in range(n)]
    finally:
        engine.dispose()


def form(code: str, i: int, tag: str) -> dict[str, str]:
    """The signIn form of user ``tag``+``i``."""
    return {
        "email": f"{tag}{i}@bench.dev",
        "provider": "kakao",
        "providerId": str(i),
        "codeVerifier": VERIFIER,
        "authorizeCode": code,
        "authorizationCode": "",
        "deviceToken": f"{tag}-device-{i}",
    }


async def sign_ins(db_url: str, port: int, path: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """N sign-ins of new users at ``concurrency`` against ``127.0.0.1:port``+``path``."""
    batch, tag = codes(db_url, n), f"p{port}x{concurrency}x{uuid.uuid4().hex[:4]}"
    say(f"sign-in via :{port}{path}: {n} at {concurrency} concurrent")
    async with httpx.AsyncClient(timeout=60) as http:

        async def sign_in(i: int) -> None:
            resp = await http.post(f"http://127.0.0.1:{port}{path}", data=form(batch[i], i, tag))
            assert resp.status_code == 200, resp.text

        return await load(n, concurrency, sign_in)


async def measure(
    db_url: str, env: dict[str, str], ports: dict[str, int]
) -> dict[str, tuple[float, list[float]]]:
    """The measurements of sections 1 and 2 (printed); returns them."""
    results: dict[str, tuple[float, list[float]]] = {}
    for concurrency, n in ((5, 150), (20, 300)):
        for label, port, path in (
            ("workflow", ports["api_view"], "/auth-service/signIn"),
            ("direct", ports["baseline"], "/signIn"),
        ):
            results[f"{label}@{concurrency}"] = await sign_ins(db_url, port, path, n, concurrency)
    async with httpx.AsyncClient(timeout=60) as http:
        say("no-op workflow with one activity: 300 at 20 concurrent")
        settings = Settings(
            env="test",
            temporal_address=env["SOSOHAPPY_TEMPORAL_ADDRESS"],
            temporal_payload_keys=env["SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS"],  # type: ignore[arg-type]
        )
        client = await connect(settings)
        queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
        with ThreadPoolExecutor(32) as executor:
            async with Worker(
                client,
                task_queue=queue,
                workflows=[NoopWorkflow],
                activities=[noop_activity],
                activity_executor=executor,
            ):

                async def noop(i: int) -> None:
                    await client.execute_workflow(
                        NoopWorkflow.run, i, id=f"noop-{queue}-{i}", task_queue=queue
                    )

                results["noop@20"] = await load(300, 20, noop)

        say("authenticated requests: 3000 at 32 concurrent, revocation view vs database lookup")
        [code] = codes(db_url, 1)
        signed = await http.post(
            f"http://127.0.0.1:{ports['api_view']}/auth-service/signIn", data=form(code, 0, "reader")
        )
        headers = {"Authorization": signed.headers["Authorization"], "email": signed.headers["email"]}
        for label, port in (("view", ports["api_view"]), ("db", ports["api_db"])):

            async def read(_: int, port: int = port) -> None:
                resp = await http.get(
                    f"http://127.0.0.1:{port}/auth-service/checkDuplicateNickname",
                    params={"nickname": "nobody"},
                    headers=headers,
                )
                assert resp.status_code == 200, resp.text

            results[f"auth-{label}"] = await load(3000, 32, read)

    say("")
    say("sign-in (rate /s, p50 ms, p99 ms):")
    for key in ("workflow@5", "direct@5", "workflow@20", "direct@20", "noop@20"):
        rate, lat = results[key]
        say(f"  {key:12s} {rate:7.1f}/s  p50 {pct(lat, 0.5):7.1f}  p99 {pct(lat, 0.99):7.1f}")
    wf5, wf20, noop_lat = results["workflow@5"][1], results["workflow@20"][1], results["noop@20"][1]
    say(f"  workflow p99 @5 = {pct(wf5, 0.99):.0f} ms (target < 250 ms)")
    say(
        f"  workflow p99 @20 / no-op workflow p99 @20 = {pct(wf20, 0.99) / pct(noop_lat, 0.99):.2f} (target <= 2)"
    )
    say(f"  workflow rate / direct rate @20 = {results['workflow@20'][0] / results['direct@20'][0]:.2f}")
    view_rate, db_rate = results["auth-view"][0], results["auth-db"][0]
    say(
        f"authenticated reads: view {view_rate:.0f}/s (p50 {pct(results['auth-view'][1], 0.5):.1f} ms), "
        f"database {db_rate:.0f}/s (p50 {pct(results['auth-db'][1], 0.5):.1f} ms), ratio {view_rate / db_rate:.2f}"
    )
    say(f"  (median of all: {statistics.median(wf20) * 1000:.1f} ms workflow sign-in @20)")
    return results


def main() -> None:
    """CLI entry point."""
    asyncio.run(run())


if __name__ == "__main__":
    main()
