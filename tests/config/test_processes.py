"""Each process refuses at start-up, outside env local/test, exactly what it uses but lacks, naming every
variable at once (``config.processes``)."""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from activities.apple import generate_apple_private_key
from config import Settings
from config.processes import Process, SettingsRefused, load_settings
from temporal.codec import generate_key_entry
from tests.fixtures.firebase import service_account

ROOT = Path(__file__).resolve().parents[2]
#: What each process needs outside env local/test (written out here, apart from config.processes, as
#: the contract the operator reads in the README).
REQUIRED: dict[Process, set[str]] = {
    Process.API: {
        "SOSOHAPPY_JWT_SECRET",
        "SOSOHAPPY_DATABASE_URL",
        "SOSOHAPPY_MONGO_URL",
        "SOSOHAPPY_KAFKA_BOOTSTRAP",
        "SOSOHAPPY_RELAY_KEYS",
        "SOSOHAPPY_TEMPORAL_ADDRESS",
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS",
        # its own sign-in worker exchanges Apple codes (SOSOHAPPY_API_SIGN_IN_WORKER, on by default)
        "SOSOHAPPY_APPLE_PRIVATE_KEY",
        "SOSOHAPPY_APPLE_TEAM_ID",
        "SOSOHAPPY_APPLE_KEY_ID",
    },
    Process.WORKER: {
        "SOSOHAPPY_DATABASE_URL",
        "SOSOHAPPY_MONGO_URL",
        "SOSOHAPPY_TEMPORAL_ADDRESS",
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS",
        "SOSOHAPPY_APPLE_PRIVATE_KEY",
        "SOSOHAPPY_APPLE_TEAM_ID",
        "SOSOHAPPY_APPLE_KEY_ID",
        "SOSOHAPPY_FCM_PROJECT_ID",
        "SOSOHAPPY_FCM_CREDENTIALS_FILE",
    },
    Process.MIGRATE: {"SOSOHAPPY_DATABASE_URL", "SOSOHAPPY_MONGO_URL"},
    Process.CODEC_SERVER: {"SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS", "SOSOHAPPY_CODEC_SERVER_TOKEN"},
    Process.SCHEDULES: {"SOSOHAPPY_TEMPORAL_ADDRESS", "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS"},
}
#: Each entry point and the process it starts as.
ENTRY_POINTS = {
    "api.serve": Process.API,
    "workers.main": Process.WORKER,
    "storage.migrate": Process.MIGRATE,
    "dm.migrate_messages": Process.MIGRATE,
    "temporal.codec_server": Process.CODEC_SERVER,
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No ``SOSOHAPPY_*`` variable inherited (the suite's own payload key included)."""
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    yield monkeypatch


@pytest.fixture
def complete(tmp_path: Path) -> dict[str, str]:
    """A production environment giving every process everything it needs."""
    account = tmp_path / "service-account.json"
    account.write_text(json.dumps(service_account()))
    return {
        "SOSOHAPPY_ENV": "production",
        "SOSOHAPPY_JWT_SECRET": "s" * 48,
        "SOSOHAPPY_DATABASE_URL": "mysql+pymysql://sosohappy:pw@mysql:3306/sosohappy",
        "SOSOHAPPY_MONGO_URL": "mongodb://root:pw@mongodb:27017/?authSource=admin",
        "SOSOHAPPY_KAFKA_BOOTSTRAP": "sosohappy-kafka-bootstrap:9092",
        "SOSOHAPPY_TEMPORAL_ADDRESS": "temporal-frontend.temporal:7233",
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS": generate_key_entry("k1"),
        "SOSOHAPPY_RELAY_KEYS": generate_key_entry("r1"),
        "SOSOHAPPY_CODEC_SERVER_TOKEN": "t" * 48,
        "SOSOHAPPY_APPLE_PRIVATE_KEY": generate_apple_private_key(),
        "SOSOHAPPY_APPLE_TEAM_ID": "TEAM123456",
        "SOSOHAPPY_APPLE_KEY_ID": "KEY1234567",
        "SOSOHAPPY_FCM_PROJECT_ID": "sosohappy-prod",
        "SOSOHAPPY_FCM_CREDENTIALS_FILE": str(account),
    }


def named_variables(refusal: SettingsRefused) -> set[str]:
    return set(re.findall(r"SOSOHAPPY_[A-Z0-9_]+", str(refusal)))


def refused(environ: pytest.MonkeyPatch, env: dict[str, str], process: Process) -> SettingsRefused | None:
    """``load_settings(process)`` under exactly ``env``: the refusal, or None when it starts."""
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        environ.delenv(key)
    for key, value in env.items():
        environ.setenv(key, value)
    try:
        settings = load_settings(process)
    except SettingsRefused as exc:
        return exc
    assert settings.env == env.get("SOSOHAPPY_ENV", "production")
    return None


@pytest.mark.parametrize("process", list(Process))
def test_every_process_starts_in_production_with_what_it_needs(
    process: Process, environ: pytest.MonkeyPatch, complete: dict[str, str]
) -> None:
    assert refused(environ, complete, process) is None
    only_its_own = {k: v for k, v in complete.items() if k in REQUIRED[process] or k == "SOSOHAPPY_ENV"}
    assert refused(environ, only_its_own, process) is None, "it needs something it does not use"


@pytest.mark.parametrize("process", list(Process))
def test_each_missing_variable_is_refused_only_by_the_processes_using_it(
    process: Process, environ: pytest.MonkeyPatch, complete: dict[str, str]
) -> None:
    for variable in sorted(set(complete) - {"SOSOHAPPY_ENV"}):
        refusal = refused(environ, {k: v for k, v in complete.items() if k != variable}, process)
        if variable in REQUIRED[process]:
            assert refusal is not None, f"{process} starts without {variable}"
            assert named_variables(refusal) == {variable}, str(refusal)
            assert str(refusal).startswith(f"the {process} process cannot start in env 'production':")
        else:
            assert refusal is None, f"{process} refuses to start without {variable}, which it does not use"


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("process", list(Process))
def test_an_empty_environment_is_refused_naming_everything_at_once(
    env: str, process: Process, environ: pytest.MonkeyPatch
) -> None:
    refusal = refused(environ, {"SOSOHAPPY_ENV": env}, process)
    assert refusal is not None and named_variables(refusal) == REQUIRED[process], str(refusal)
    assert isinstance(refusal, SystemExit) and str(refusal).count("\n  - ") == len(REQUIRED[process])


@pytest.mark.parametrize("env", ["local", "test"])
@pytest.mark.parametrize("process", list(Process))
def test_local_and_test_start_on_the_local_defaults(
    env: str, process: Process, environ: pytest.MonkeyPatch
) -> None:
    refusal = refused(environ, {"SOSOHAPPY_ENV": env}, process)
    if process is Process.CODEC_SERVER:  # in any env: no codec server without its token
        assert refusal is not None and named_variables(refusal) == {"SOSOHAPPY_CODEC_SERVER_TOKEN"}
        assert (
            refused(environ, {"SOSOHAPPY_ENV": env, "SOSOHAPPY_CODEC_SERVER_TOKEN": "t" * 40}, process)
            is None
        )
    else:
        assert refusal is None, str(refusal)


def test_the_api_needs_apple_only_for_its_own_sign_in_worker(
    environ: pytest.MonkeyPatch, complete: dict[str, str]
) -> None:
    without_apple = {k: v for k, v in complete.items() if not k.startswith("SOSOHAPPY_APPLE_")}
    refusal = refused(environ, without_apple, Process.API)
    assert refusal is not None and named_variables(refusal) == REQUIRED[Process.API] & set(complete) - set(
        without_apple
    )
    assert refused(environ, {**without_apple, "SOSOHAPPY_API_SIGN_IN_WORKER": "false"}, Process.API) is None


def _der_b64(key: Any) -> str:
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode()


def _bad_values(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(variable, value, what the refusal says) of values that are set but unusable in production."""
    directory = tmp_path / "a-directory"
    directory.mkdir()
    not_json, not_an_account = tmp_path / "not.json", tmp_path / "other.json"
    not_json.write_text("{")
    not_an_account.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return [
        ("SOSOHAPPY_DATABASE_URL", "sqlite:////var/lib/sosohappy.db", "must be a MySQL URL"),
        ("SOSOHAPPY_DATABASE_URL", "postgresql://u@db/sosohappy", "must be a MySQL URL"),
        ("SOSOHAPPY_DATABASE_URL", "not a url", "is not a database URL"),
        ("SOSOHAPPY_APPLE_PRIVATE_KEY", "bm90IGEga2V5", "is not a P-256 key"),
        ("SOSOHAPPY_APPLE_PRIVATE_KEY", "%%%", "is not a P-256 key"),
        ("SOSOHAPPY_APPLE_PRIVATE_KEY", pem.decode(), "is not a P-256 key"),  # PEM, not the .p8 body
        ("SOSOHAPPY_APPLE_PRIVATE_KEY", _der_b64(ec.generate_private_key(ec.SECP384R1())), "is not a P-256"),
        (
            "SOSOHAPPY_APPLE_PRIVATE_KEY",
            _der_b64(rsa.generate_private_key(65537, 2048)),
            "is not a P-256 key",
        ),
        ("SOSOHAPPY_APPLE_TEAM_ID", "LOCALTEAM1", "placeholder"),
        ("SOSOHAPPY_APPLE_KEY_ID", " ", "is not set"),
        ("SOSOHAPPY_FCM_CREDENTIALS_FILE", str(tmp_path / "missing.json"), "names no file"),
        ("SOSOHAPPY_FCM_CREDENTIALS_FILE", str(directory), "names no file"),
        ("SOSOHAPPY_FCM_CREDENTIALS_FILE", str(not_json), "is unreadable"),
        ("SOSOHAPPY_FCM_CREDENTIALS_FILE", str(not_an_account), "is not a service-account JSON key"),
        ("SOSOHAPPY_FCM_PROJECT_ID", "sosohappy-local", "the emulator's project"),
        ("SOSOHAPPY_FCM_PROJECT_ID", "", "is not set"),
        ("SOSOHAPPY_MONGO_URL", "", "is not set"),
    ]


def test_values_set_but_unusable_in_production_are_refused(
    environ: pytest.MonkeyPatch, complete: dict[str, str], tmp_path: Path
) -> None:
    for variable, value, reason in _bad_values(tmp_path):
        refusal = refused(environ, {**complete, variable: value}, Process.WORKER)
        assert refusal is not None, (variable, value)
        assert named_variables(refusal) == {variable} and reason in str(refusal), str(refusal)
        if variable == "SOSOHAPPY_APPLE_PRIVATE_KEY":
            assert value not in str(refusal), "the key is in the message"


def test_a_loopback_address_given_explicitly_is_taken(
    environ: pytest.MonkeyPatch, complete: dict[str, str]
) -> None:
    """A sidecar (e.g. a database proxy in the pod) listens on loopback: only the unset default is refused."""
    loopback = {
        "SOSOHAPPY_MONGO_URL": "mongodb://127.0.0.1:27017",
        "SOSOHAPPY_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
        "SOSOHAPPY_TEMPORAL_ADDRESS": "127.0.0.1:7233",
    }
    assert refused(environ, {**complete, **loopback}, Process.API) is None
    # the default, unset, is still refused (the process would reach for a server that is not there)
    only_mongo = {"SOSOHAPPY_ENV": "production", "SOSOHAPPY_MONGO_URL": loopback["SOSOHAPPY_MONGO_URL"]}
    refusal = refused(environ, only_mongo, Process.MIGRATE)
    assert refusal is not None and named_variables(refusal) == {"SOSOHAPPY_DATABASE_URL"}


class Started(Exception):
    """Raised by the stand-in of ``load_settings``: the entry point asked for its settings first."""


@pytest.mark.parametrize("module_name", sorted(ENTRY_POINTS))
def test_each_entry_point_loads_its_settings_first(module_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(module_name)
    asked: list[Process] = []

    def load(process: Process) -> Settings:
        asked.append(process)
        raise Started

    monkeypatch.setattr(module, "load_settings", load)
    with pytest.raises(Started):
        module.main([]) if "migrate" in module_name else module.main()
    assert asked == [ENTRY_POINTS[module_name]] == [module.PROCESS]


def test_the_api_factories_and_the_schedule_tools_load_their_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import config.processes
    from api import main
    from temporal import housekeeping, nudges

    asked: list[Process] = []

    def load(process: Process) -> Settings:
        asked.append(process)
        raise Started

    monkeypatch.setattr(main, "load_settings", load)
    monkeypatch.setattr(config.processes, "load_settings", load)  # the tools import it when they run
    for start in (
        main.app,
        main.create_app,
        lambda: asyncio.run(housekeeping._main()),
        lambda: asyncio.run(nudges._main()),
    ):
        with pytest.raises(Started):
            start()
    assert asked == [Process.API, Process.API, Process.SCHEDULES, Process.SCHEDULES]


def test_a_refused_process_exits_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")} | {
        "SOSOHAPPY_ENV": "production"
    }
    done = subprocess.run(
        [sys.executable, "-m", "storage.migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "the migrate process cannot start in env 'production':",
        "  - SOSOHAPPY_DATABASE_URL is not set (the SQLite file in the data folder is for local use only)",
        "  - SOSOHAPPY_MONGO_URL is not set (the message store; the default mongodb://127.0.0.1:27017 is the local one)",
    ], done.stderr
