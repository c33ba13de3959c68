"""``make run``: the whole backend on this machine, on real servers, supervised until Ctrl-C.

Starts, in order: the codec server, the Temporal dev server (+ Web UI, decoding through the codec server), Kafka-protocol broker, MongoDB-wire server, the relational
database (SQLite file in the data folder, or ``SOSOHAPPY_DATABASE_URL``), migrations (and, once MongoDB is
up, the conversion of legacy messages), the FCM and Apple emulators, the worker and the API. Any failure
names the server and exits non-zero; Ctrl-C, SIGTERM or SIGHUP (the terminal closed, the SSH session
dropped) stops every child: they run in sessions of their own, so nothing else would stop them. State lives under the data folder (``SOSOHAPPY_DATA_DIR``, default ``.data``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from activities.apple import apple_public_key_pem, generate_apple_private_key
from api.relay_seal import LOCAL_KEY_FILE as RELAY_KEY_FILE
from config import Settings
from devstack.processes import (
    ManagedProcess,
    StartError,
    broker_argv,
    ensure_port_free,
    local_mongo_url,
    mongo_argv,
)
from dm.migrate_messages import convert_from_settings
from storage.db import migrate, probe_database, shown_url
from temporal.client import connect
from temporal.codec import local_key_file
from temporal.devserver import start_dev_args
from temporal.housekeeping import SCHEDULE_ID, ensure_schedule
from temporal.nudges import REMINDER_SCHEDULE_ID, ensure_schedules

#: The environment of the dev stack when ``SOSOHAPPY_ENV`` is not set (its children get it explicitly).
LOCAL_ENV = "local"
#: Each stops the stack and every child: Ctrl-C, ``kill``, and the terminal or SSH session going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StackPorts(BaseSettings):
    """Ports of the local servers (``SOSOHAPPY_<NAME>_PORT``); the API's ports come from ``Settings``."""

    model_config = SettingsConfigDict(env_prefix="SOSOHAPPY_", extra="ignore")

    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    kafka_port: int = 9092
    mongo_port: int = 27017
    fcm_emulator_port: int = 9099
    apple_emulator_port: int = 9098
    worker_metrics_port: int = 9464
    worker_temporal_metrics_port: int = 9465
    codec_server_port: int = 8234


class Stopped(Exception):
    """Raised inside the supervisor when one of ``STOP_SIGNALS`` arrives."""


def say(text: str) -> None:
    """Print one progress line at once. Once the terminal is gone (SIGHUP), writing fails: the lines
    go to /dev/null from then on, so stopping the children goes on and the exit is clean."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


@dataclass
class Stack:
    """The children started so far, stopped in reverse order."""

    data_dir: Path
    children: list[ManagedProcess]
    #: While a child is spawned and recorded, a stop signal only marks itself here (see ``spawn``).
    _spawning: bool = field(default=False, repr=False)
    _pending: str | None = field(default=None, repr=False)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """The handler of ``STOP_SIGNALS``: raise ``Stopped`` wherever the supervisor is."""
        name = signal.Signals(signum).name
        if self._spawning:
            self._pending = name
            return
        raise Stopped(name)

    def spawn(self, proc: ManagedProcess) -> ManagedProcess:
        """Start ``proc`` and record it among the children; a stop signal arriving meanwhile is raised
        once it is recorded, so no child started is left out of ``stop``."""
        self._spawning = True
        try:
            self.children.append(proc.start())
        finally:
            self._spawning = False
        if self._pending:
            raise Stopped(self._pending)
        return proc

    def start(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        setting: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        what: str = "",
    ) -> ManagedProcess:
        """Check the port is free, start ``argv`` and wait until it listens."""
        say(f"→ starting {name} on 127.0.0.1:{port}{what}")
        ensure_port_free(name, port, setting)
        t0 = time.monotonic()
        proc = ManagedProcess(name, argv, self.data_dir / "logs" / f"{name.split()[0].lower()}.log", env=env)
        self.spawn(proc)
        proc.wait_for_port(port, timeout=timeout)
        say(f"  ✓ {name} ready in {time.monotonic() - t0:.1f}s")
        return proc

    def stop(self) -> None:
        """Stop every child, newest first."""
        for proc in reversed(self.children):
            if proc.alive():
                say(f"  stopping {proc.name}")
            proc.stop()


def _apple_key(data_dir: Path) -> tuple[str, Path]:
    """The local Apple signing key (created once, reused) and the public-key file for the emulator."""
    key_file, pub_file = data_dir / "apple-key.b64", data_dir / "apple-key.pub.pem"
    if not key_file.exists():
        key_file.write_text(generate_apple_private_key())
        key_file.chmod(0o600)
    key = key_file.read_text().strip()
    pub_file.write_bytes(apple_public_key_pem(key))
    return key, pub_file


def _codec_secrets(data_dir: Path) -> tuple[str, str]:
    """The local payload keyring and codec-server token, each generated once into the data folder and
    reused by every later start (histories written before a restart stay readable)."""
    token_file = data_dir / "codec-server-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32) + "\n")
        token_file.chmod(0o600)
    return local_key_file(data_dir).read_text().strip(), token_file.read_text().strip()


def _prepare_database(settings: Settings) -> None:
    """Check the configured database answers (fail fast, naming the setting), then migrate it."""
    url = settings.sqlalchemy_url
    shown = shown_url(url)
    configured = settings.database_url is not None
    say(
        f"→ database {shown}"
        + ("" if configured else " (embedded SQLite; set SOSOHAPPY_DATABASE_URL for MySQL)")
    )
    try:
        probe_database(url)
    except Exception as exc:
        setting = "SOSOHAPPY_DATABASE_URL" if configured else "SOSOHAPPY_DATA_DIR"
        raise StartError(
            f"database {shown} (from {setting}) is unreachable: {type(exc).__name__}: {exc}"
        ) from exc
    t0 = time.monotonic()
    migrate(url)
    say(f"  ✓ migrations applied in {time.monotonic() - t0:.1f}s")


def _convert_messages(settings: Settings) -> None:
    """Give the messages stored by nickname only their users' ids (idempotent), before any API serves."""
    try:
        report = convert_from_settings(settings, timeout=30)
    except Exception as exc:
        raise StartError(f"converting the direct messages failed: {type(exc).__name__}: {exc}") from exc
    left = f", {report.unresolved_total} unresolved" if report.unresolved_total else ""
    deferred = (
        f" (deferred: {report.deferred_for_renames} renames pending)" if report.deferred_for_renames else ""
    )
    say(f"  ✓ legacy messages: {report.converted} converted{left}{deferred}")


def _ensure_housekeeping(settings: Settings) -> None:
    """Create (or bring up to date) the hourly housekeeping Schedule on the dev server."""

    async def ensure() -> bool:
        return await ensure_schedule(await connect(settings), settings)

    try:
        created = asyncio.run(ensure())
    except Exception as exc:
        raise StartError(f"creating the housekeeping schedule failed: {type(exc).__name__}: {exc}") from exc
    state = "created" if created else "up to date"
    say(f"  ✓ schedule {SCHEDULE_ID} {state} (hourly; Web UI → Schedules)")


def _ensure_nudges(settings: Settings) -> None:
    """Create (or bring up to date) the evening reminder and monthly story Schedules on the dev server."""

    async def ensure() -> dict[str, bool]:
        return await ensure_schedules(await connect(settings), settings)

    try:
        created = asyncio.run(ensure())
    except Exception as exc:
        raise StartError(f"creating the nudge schedules failed: {type(exc).__name__}: {exc}") from exc
    for schedule_id, new in created.items():
        when = (
            f"daily {settings.nudge_reminder_time:%H:%M} KST"
            if schedule_id == REMINDER_SCHEDULE_ID
            else f"the 1st, {settings.nudge_monthly_time:%H:%M} KST"
        )
        say(f"  ✓ schedule {schedule_id} {'created' if new else 'up to date'} ({when}; Web UI → Schedules)")


def _wait_ready(proc: ManagedProcess, url: str, timeout: float = 60) -> None:
    """Wait until ``url``/readyz answers 200 (API or worker)."""

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_until(ready, timeout, f"{url}/readyz answered 200")


def run() -> int:
    """Start and supervise the stack; returns the exit code."""
    # The dev stack is local development: it says so (an unset SOSOHAPPY_ENV means production, which
    # refuses the public default JWT secret), unless the caller chose an env explicitly.
    settings = Settings(env=os.environ.get("SOSOHAPPY_ENV") or LOCAL_ENV)  # type: ignore[arg-type]
    ports = StackPorts()
    data_dir = settings.data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    stack = Stack(data_dir, [])

    for signum in STOP_SIGNALS:
        signal.signal(signum, stack.on_signal)
    say(f"SoSoHappy local stack (data in {data_dir})")
    try:
        _prepare_database(settings)
        (data_dir / "temporal").mkdir(exist_ok=True)
        payload_keys, codec_token = _codec_secrets(data_dir)
        ui_origin = f"http://127.0.0.1:{ports.temporal_ui_port}"
        codec_url = f"http://127.0.0.1:{ports.codec_server_port}"
        # The Web UI calls the codec server from the browser and cannot send our token: the codec
        # server lets its origin /decode without one from this machine only (README "Payload encryption").
        stack.start(
            "codec server",
            [sys.executable, "-m", "temporal.codec_server"],
            ports.codec_server_port,
            setting="SOSOHAPPY_CODEC_SERVER_PORT",
            env={
                "SOSOHAPPY_ENV": settings.env,
                "SOSOHAPPY_DATA_DIR": str(data_dir),
                "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": payload_keys,
                "SOSOHAPPY_CODEC_SERVER_HOST": "127.0.0.1",
                "SOSOHAPPY_CODEC_SERVER_PORT": str(ports.codec_server_port),
                "SOSOHAPPY_CODEC_SERVER_TOKEN": codec_token,
                "SOSOHAPPY_CODEC_SERVER_UI_ORIGIN": ui_origin,
                "SOSOHAPPY_CODEC_SERVER_UI_WITHOUT_TOKEN": "true",
                "SOSOHAPPY_LOG_FORMAT": settings.log_format,
            },
        )
        ensure_port_free("Temporal Web UI", ports.temporal_ui_port, "SOSOHAPPY_TEMPORAL_UI_PORT")
        stack.start(
            "Temporal dev server",
            start_dev_args(
                port=ports.temporal_port,
                ui_port=ports.temporal_ui_port,
                db_file=data_dir / "temporal" / "temporal.db",
                ui_codec_endpoint=codec_url,
            ),
            ports.temporal_port,
            setting="SOSOHAPPY_TEMPORAL_PORT",
            timeout=90,
            what=f" (Web UI {ports.temporal_ui_port})",
        )
        stack.start(
            "Kafka broker (Tansu)",
            broker_argv(ports.kafka_port),
            ports.kafka_port,
            setting="SOSOHAPPY_KAFKA_PORT",
        )
        stack.start(
            "MongoDB-wire server (SecantusDB)",
            mongo_argv(ports.mongo_port, data_dir / "mongo"),
            ports.mongo_port,
            setting="SOSOHAPPY_MONGO_PORT",
        )
        _convert_messages(settings.model_copy(update={"mongo_url": local_mongo_url(ports.mongo_port)}))
        apple_key, apple_pub = _apple_key(data_dir)
        py = sys.executable
        stack.start(
            "FCM emulator",
            [py, "-m", "emulators.fcm", "--port", str(ports.fcm_emulator_port)],
            ports.fcm_emulator_port,
            setting="SOSOHAPPY_FCM_EMULATOR_PORT",
        )
        stack.start(
            "Apple emulator",
            [
                py,
                "-m",
                "emulators.apple",
                "--port",
                str(ports.apple_emulator_port),
                "--client-public-key-file",
                str(apple_pub),
            ],
            ports.apple_emulator_port,
            setting="SOSOHAPPY_APPLE_EMULATOR_PORT",
        )
        env = {
            "SOSOHAPPY_ENV": settings.env,
            "SOSOHAPPY_DATA_DIR": str(data_dir),
            "SOSOHAPPY_DATABASE_URL": settings.sqlalchemy_url,
            "SOSOHAPPY_TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal_port}",
            "SOSOHAPPY_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka_port}",
            "SOSOHAPPY_MONGO_URL": local_mongo_url(ports.mongo_port),
            "SOSOHAPPY_FCM_ENDPOINT": f"http://127.0.0.1:{ports.fcm_emulator_port}",
            "SOSOHAPPY_APPLE_BASE_URL": f"http://127.0.0.1:{ports.apple_emulator_port}",
            "SOSOHAPPY_APPLE_PRIVATE_KEY": apple_key,
            "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": payload_keys,
            # Generated once like the payload keys; only the API reads them (its DM relay records).
            "SOSOHAPPY_RELAY_KEYS": local_key_file(data_dir, RELAY_KEY_FILE).read_text().strip(),
            "SOSOHAPPY_WORKER_METRICS_PORT": str(ports.worker_metrics_port),
            "SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT": str(ports.worker_temporal_metrics_port),
            "SOSOHAPPY_API_HOST": settings.api_host,
            "SOSOHAPPY_API_PORT": str(settings.api_port),
            "SOSOHAPPY_API_METRICS_PORT": str(settings.api_metrics_port),
        }
        ensure_port_free("worker metrics", ports.worker_metrics_port, "SOSOHAPPY_WORKER_METRICS_PORT")
        ensure_port_free(
            "worker Temporal SDK metrics",
            ports.worker_temporal_metrics_port,
            "SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT",
        )
        say(
            f"→ starting Temporal worker (metrics and health on :{ports.worker_metrics_port}, "
            f"SDK metrics on :{ports.worker_temporal_metrics_port})"
        )
        worker = ManagedProcess(
            "worker", [py, "-m", "workers.main"], data_dir / "logs" / "worker.log", env=env
        )
        stack.spawn(worker)
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        api_metrics_url = f"http://{settings.api_host}:{settings.api_metrics_port}"
        if settings.api_metrics_port:
            ensure_port_free("API metrics", settings.api_metrics_port, "SOSOHAPPY_API_METRICS_PORT")
        # api.serve holds the one definition of the uvicorn flags (h11, websockets, no access log) and
        # serves the metrics on their own port.
        api = stack.start(
            "API (uvicorn)", [py, "-m", "api.serve"], settings.api_port, setting="SOSOHAPPY_API_PORT", env=env
        )
        _wait_ready(api, api_url)
        worker_url = f"http://127.0.0.1:{ports.worker_metrics_port}"
        _wait_ready(worker, worker_url)
        stack_settings = settings.model_copy(update={"temporal_address": env["SOSOHAPPY_TEMPORAL_ADDRESS"]})
        _ensure_housekeeping(stack_settings)
        _ensure_nudges(stack_settings)
        say("")
        say("SoSoHappy is up:")
        say(f"  API               {api_url}")
        say(f"  OpenAPI docs      {api_url}/docs")
        say(f"  readiness         {api_url}/readyz    metrics {api_metrics_url}/metrics")
        say(f"  Temporal Web UI   http://127.0.0.1:{ports.temporal_ui_port}")
        say(f"  temporal CLI      .venv/bin/temporal workflow list --address 127.0.0.1:{ports.temporal_port}")
        say(f"  codec server      {codec_url}  (the Web UI decodes through it)")
        say(
            f"  decoded history   .venv/bin/temporal workflow show --address 127.0.0.1:{ports.temporal_port} "
            f'-w <id> --detailed --codec-endpoint {codec_url} --codec-auth "Bearer $(cat {data_dir / "codec-server-token"})"'
        )
        say(f"  worker metrics    {worker_url}/metrics    health {worker_url}/healthz {worker_url}/readyz")
        say(f"  worker SDK        http://127.0.0.1:{ports.worker_temporal_metrics_port}/metrics")
        say(f"  FCM emulator      http://127.0.0.1:{ports.fcm_emulator_port}/emulator/messages")
        say(f"  Apple emulator    http://127.0.0.1:{ports.apple_emulator_port}")
        say(f"  logs              {data_dir / 'logs'}")
        say("Press Ctrl-C to stop.")
        while True:
            for proc in stack.children:
                if not proc.alive():
                    raise StartError(f"{proc.name} exited unexpectedly; last log lines:\n{proc.log_tail()}")
            time.sleep(0.5)
    except Stopped as sig:
        say(f"\n{sig}: stopping…")
        return_code = 0
    except StartError as exc:
        say(f"\n✗ {exc}")
        return_code = 1
    finally:
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        stack.stop()
        say("stopped.")
    return return_code


def main() -> None:
    """Entry point of ``python -m devstack.run``."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run())


if __name__ == "__main__":
    main()
