"""Sign-in and authentication benchmark, every figure beside its baseline from the same run.

    .venv/bin/python -m bench.signin

1. Sign-ins through HTTP + SignInWorkflow (API and worker processes) vs the same steps without Temporal
   (``bench.signin_baseline``), at 5 and 20 concurrent clients: rate, p50, p99; and the p99 of a no-op
   workflow with one activity at 20 concurrent on the same Temporal server; and the workflow path again
   through an API and worker with the payload codec off (their own task queues), for the codec's cost.
2. Authenticated requests/s with the Kafka-fed revocation view vs a database lookup per request.

Starts its own Temporal dev server, broker, MongoDB-wire server and processes on free ports, with a
throwaway MySQL database (``SOSOHAPPY_TEST_DATABASE_URL``, default the local MariaDB).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pymysql
from sqlalchemy.engine import make_url

from bench.cli import stop_on_sigterm
from bench.devserver import Figures, load, noop_ceiling, pct
from config import Settings
from devstack.bytecode import compile_project
from devstack.processes import ManagedProcess, broker_argv, free_port, local_mongo_url, mongo_argv
from storage import logins
from storage.db import create_db_engine, migrate, session_factory
from temporal.client import connect
from temporal.codec import generate_key_entry
from temporal.devserver import start_dev_args

#: Sign-ins run on each path before it is measured, at the measured concurrency.
WARMUP = 20


async def warm(call: Callable[[int], Awaitable[None]], first: int, i: int) -> None:
    """``call(first + i)``: the unmeasured sign-ins use the codes after the measured ones."""
    await call(first + i)


def say(text: str) -> None:
    """Progress on stdout at once."""
    print(text, flush=True)


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
    names = ("temporal", "kafka", "mongo", "api_view", "api_db", "api_plain", "baseline")
    ports = {name: free_port() for name in names}
    env = {
        "SOSOHAPPY_ENV": "test",
        "SOSOHAPPY_DATABASE_URL": db_url,
        "SOSOHAPPY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "SOSOHAPPY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports['kafka']}",
        "SOSOHAPPY_MONGO_URL": local_mongo_url(ports["mongo"]),
        "SOSOHAPPY_WORKER_METRICS_PORT": "0",
        "SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT": "0",
        # Hundreds of sign-ins from 127.0.0.1 are the point here, not what the per-IP limit is for.
        "SOSOHAPPY_SIGN_IN_RATE_LIMIT_PER_MINUTE": "0",
        # One payload key for every process of the run (each would otherwise generate its own).
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": generate_key_entry("bench"),
        "SOSOHAPPY_RELAY_KEYS": generate_key_entry("bench-relay"),
    }
    py = sys.executable
    # Keep-alive longer than any pause of a loaded run: a connection uvicorn closes while the client
    # reuses it is a ReadError, not a figure.
    uvicorn = [py, "-m", "uvicorn", "--http", "h11", "--log-level", "warning", "--no-access-log"]
    uvicorn += ["--timeout-keep-alive", "120"]
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
        migrate(db_url)
        say(f"starting Temporal, Kafka, MongoDB-wire servers (logs in {work})")
        for proc, port in zip(procs, (ports["temporal"], ports["kafka"], ports["mongo"]), strict=True):
            proc.start().wait_for_port(port, timeout=90)
        say(
            "starting two workers and three API processes (revocation view on / off, payload codec off) "
            "and the baseline app"
        )
        # The codec-off API and its worker on their own task queues: neither side reads the other's
        # payloads.
        plain = {
            "SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION": "false",
            "SOSOHAPPY_TEMPORAL_TASK_QUEUE_PREFIX": "plain",
        }
        apps = [
            ("worker", [py, "-m", "workers.main"], {}, None),
            ("worker_plain", [py, "-m", "workers.main"], plain, None),
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
                "api_plain",
                [*uvicorn, "api.main:app", "--factory", "--port", str(ports["api_plain"])],
                plain,
                "api_plain",
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
        for port_name in ("api_view", "api_db", "api_plain"):
            async with httpx.AsyncClient() as probe:
                for _ in range(200):
                    if (await probe.get(f"http://127.0.0.1:{ports[port_name]}/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
        await measure(db_url, env, ports)
    finally:
        for proc in reversed(procs):
            proc.stop()
        drop_db()


async def measure(db_url: str, env: dict[str, str], ports: dict[str, int]) -> None:
    """The measurements themselves."""
    sessions = session_factory(create_db_engine(db_url))
    verifier = "k3PqZ8aLw0mT9xRb2VdN"
    challenge = hashlib.sha512(verifier.encode()).hexdigest()

    def codes(n: int) -> list[str]:
        with sessions.begin() as s:
            return [logins.create_authorize_code(s, challenge, 600) for _ in range(n)]

    def form(code: str, i: int, tag: str) -> dict[str, str]:
        return {
            "email": f"{tag}{i}@bench.dev",
            "provider": "kakao",
            "providerId": str(i),
            "codeVerifier": verifier,
            "authorizeCode": code,
            "authorizationCode": "",
            "deviceToken": f"{tag}-device-{i}",
        }

    results: dict[str, Figures] = {}
    async with httpx.AsyncClient(timeout=60) as http:
        for concurrency, n in ((5, 150), (20, 300)):
            for label, port, path in (
                ("workflow", ports["api_view"], "/auth-service/signIn"),
                ("direct", ports["baseline"], "/signIn"),
                ("codec-off", ports["api_plain"], "/auth-service/signIn"),
            ):
                batch, tag = codes(WARMUP + n), f"{label}{concurrency}x{uuid.uuid4().hex[:4]}"
                say(f"sign-in via {label} path: {n} at {concurrency} concurrent, after {WARMUP} unmeasured")

                async def sign_in(
                    i: int, port: int = port, path: str = path, batch: list[str] = batch, tag: str = tag
                ) -> None:
                    resp = await http.post(f"http://127.0.0.1:{port}{path}", data=form(batch[i], i, tag))
                    assert resp.status_code == 200, resp.text

                # Warm first, as noop_ceiling does: a fresh process's first requests (imports, pools,
                # caches) would otherwise land in the measured p99 of whichever path runs first.
                await load(WARMUP, concurrency, functools.partial(warm, sign_in, n))
                results[f"{label}@{concurrency}"] = await load(n, concurrency, sign_in)
                say(f"  {label}@{concurrency}: {results[f'{label}@{concurrency}'].line()}")

        say("no-op workflow with one activity: 300 at 20 concurrent")
        settings = Settings(env="test", temporal_address=env["SOSOHAPPY_TEMPORAL_ADDRESS"])
        temporal = await connect(settings)
        results["noop@20"] = await noop_ceiling(temporal, 300, 20)
        say("empty workflow of sign-in's shape (a local activity, started eagerly): 150 at 5 concurrent")
        results["noop-eager@5"] = await noop_ceiling(temporal, 150, 5, local=True, eager=True)

        say("authenticated requests: 3000 at 32 concurrent, revocation view vs database lookup")
        [code] = codes(1)
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
    for key in ("workflow@5", "direct@5", "codec-off@5", "workflow@20", "direct@20", "codec-off@20"):
        say(f"  {key:12s} {results[key].line()}")
    say(f"  {'noop@20':12s} {results['noop@20'].line()}")
    say(f"  {'noop-eager@5':12s} {results['noop-eager@5'].line()}  (local activity, eager start)")
    wf5, direct5 = results["workflow@5"].latencies, results["direct@5"].latencies
    wf20, noop20 = results["workflow@20"].latencies, results["noop@20"].latencies
    checks = [
        ("p50 @5, workflow / direct", pct(wf5, 0.5), pct(direct5, 0.5), 2.0),
        ("p99 @5, workflow / direct", pct(wf5, 0.99), pct(direct5, 0.99), 3.0),
        ("p99 @20, workflow / no-op workflow", pct(wf20, 0.99), pct(noop20, 0.99), 2.0),
    ]
    for label, figure, baseline, target in checks:
        ratio = figure / baseline
        verdict = "met" if ratio <= target else "NOT met"
        say(f"  {label}: {figure:.0f} / {baseline:.0f} ms = {ratio:.2f} (target <= {target:g}: {verdict})")
    # What no sign-in workflow can beat on this server: an empty workflow of its shape, plus the
    # database steps the direct path runs (both at 5 concurrent, medians).
    floor = pct(results["noop-eager@5"].latencies, 0.5) + pct(direct5, 0.5)
    say(
        f"  floor of p50 @5: empty eager workflow + direct = {floor:.0f} ms = "
        f"{floor / pct(direct5, 0.5):.2f} x direct (the bound the p50 target meets on this server)"
    )
    p99 = pct(wf5, 0.99)
    say(f"  workflow p99 @5 = {p99:.0f} ms (target < 250 ms: {'met' if p99 < 250 else 'NOT met'})")
    say(f"  workflow rate / direct rate @20 = {results['workflow@20'].rate / results['direct@20'].rate:.2f}")
    for concurrency in (5, 20):
        on, off = results[f"workflow@{concurrency}"].rate, results[f"codec-off@{concurrency}"].rate
        verdict = "met" if on >= 0.9 * off else "NOT met"
        say(f"  codec on / off rate @{concurrency} = {on / off:.2f} (target >= 0.90: {verdict})")
    view, db = results["auth-view"], results["auth-db"]
    say(
        f"authenticated reads: view {view.rate:.0f}/s (p50 {pct(view.latencies, 0.5):.1f} ms), "
        f"database {db.rate:.0f}/s (p50 {pct(db.latencies, 0.5):.1f} ms), ratio {view.rate / db.rate:.2f}"
    )
    say(f"  (median of all: {statistics.median(wf20) * 1000:.1f} ms workflow sign-in @20)")


def main() -> None:
    """CLI entry point (no options)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.signin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args()
    stop_on_sigterm()
    compile_project()  # the workers here re-import workflow modules per run (devstack.bytecode)
    asyncio.run(run())


if __name__ == "__main__":
    main()
