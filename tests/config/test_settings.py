"""The settings refuse unsafe secrets outside local development, and each one is documented."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from config import Settings
from config.processes import Process, SettingsRefused, check_settings, load_settings, problems
from config.settings import DEFAULT_JWT_SECRET
from temporal.codec import generate_key_entry, payload_keys


@pytest.fixture
def no_sosohappy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``SOSOHAPPY_*`` variable inherited from the shell running the tests."""
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_an_unset_env_fails_closed_on_the_default_jwt_secret(no_sosohappy_env: pytest.MonkeyPatch) -> None:
    settings = Settings()  # what the process needs is its own start-up check (config.processes)
    assert settings.env == "production" and not settings.is_local
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_JWT_SECRET is not set"):
        load_settings(Process.API)


@pytest.mark.parametrize("env", ["local", "test"])
def test_an_explicit_local_env_accepts_the_default_jwt_secret(
    env: str, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    no_sosohappy_env.setenv("SOSOHAPPY_ENV", env)
    settings = load_settings(Process.API)
    assert settings.env == env and settings.is_local and settings.jwt_secret == DEFAULT_JWT_SECRET


@pytest.mark.parametrize("env", ["staging", "production"])
def test_staging_and_production_refuse_the_default_jwt_secret(
    env: str, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    no_sosohappy_env.setenv("SOSOHAPPY_ENV", env)
    with pytest.raises(SettingsRefused, match=f"in env '{env}'(.|\n)*SOSOHAPPY_JWT_SECRET is not set"):
        load_settings(Process.API)
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_JWT_SECRET is not set"):
        check_settings(Settings(env=env), Process.API)  # type: ignore[arg-type]


def test_production_accepts_a_configured_secret() -> None:
    keys = generate_key_entry("k1")
    settings = Settings(env="production", jwt_secret="x" * 64, temporal_payload_keys=keys)  # type: ignore[arg-type]
    assert settings.jwt_secret == "x" * 64
    assert "SOSOHAPPY_JWT_SECRET" not in " ".join(problems(settings, Process.API))


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("process", [Process.API, Process.WORKER, Process.CODEC_SERVER, Process.SCHEDULES])
def test_production_refuses_to_start_without_payload_keys(
    env: str, process: Process, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    no_sosohappy_env.setenv("SOSOHAPPY_ENV", env)
    no_sosohappy_env.setenv("SOSOHAPPY_JWT_SECRET", "s" * 48)
    with pytest.raises(SettingsRefused, match="SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS is not set"):
        load_settings(process)
    no_sosohappy_env.setenv(
        "SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS", f"{generate_key_entry('new')},{generate_key_entry('old')}"
    )
    assert [key_id for key_id, _ in payload_keys(Settings())] == ["new", "old"]
    assert not [p for p in problems(Settings(), process) if "PAYLOAD_KEYS" in p]
    no_sosohappy_env.setenv("SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION", "false")
    with pytest.raises(ValidationError, match="SOSOHAPPY_TEMPORAL_PAYLOAD_ENCRYPTION cannot be off"):
        Settings()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("nokey", "entry 1 is not `id:base64key`"),
        ("k1:%%%", "key 'k1' is not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "key 'k1' has 5 bytes, not 32"),
        (f"{generate_key_entry('k1')},{generate_key_entry('k1')}", "names key 'k1' twice"),
    ],
)
def test_malformed_payload_keys_are_refused_naming_the_entry(value: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)) as raised:
        Settings(env="test", temporal_payload_keys=value)  # type: ignore[arg-type]
    material = value.partition(":")[2]
    assert not material or material not in str(raised.value), "the key material is in the error"


def test_local_env_generates_one_payload_key_and_reuses_it(
    tmp_path: Path, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    first = payload_keys(Settings(env="local", data_dir=tmp_path))
    again = payload_keys(Settings(env="local", data_dir=tmp_path))
    assert first == again and len(first) == 1 and len(first[0][1]) == 32
    assert (tmp_path / "temporal-payload-keys").stat().st_mode & 0o777 == 0o600


def test_codec_server_tokens_are_long() -> None:
    with pytest.raises(ValidationError, match="SOSOHAPPY_CODEC_SERVER_TOKEN must be at least 32"):
        Settings(env="test", codec_server_token="short")  # type: ignore[arg-type]


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(env="local", jwt_secret="short")


def test_environment_variables_use_the_sosohappy_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOSOHAPPY_ENV", "test")
    monkeypatch.setenv("SOSOHAPPY_API_PORT", "9999")
    monkeypatch.setenv("SOSOHAPPY_DATABASE_URL", "mysql+pymysql://u@db:3306/sosohappy")
    settings = Settings()
    assert settings.api_port == 9999
    assert settings.sqlalchemy_url == "mysql+pymysql://u@db:3306/sosohappy"


def test_every_setting_is_documented_in_the_readme_configuration_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(SOSOHAPPY_[A-Z0-9_]+)`", table))
    assert {f"SOSOHAPPY_{name.upper()}" for name in Settings.model_fields} - documented == set()


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"api_port": 0}, "api_port"),
        ({"api_port": 65536}, "api_port"),
        ({"codec_server_port": 0}, "codec_server_port"),
        ({"worker_metrics_port": -1}, "worker_metrics_port"),
        ({"worker_metrics_port": 65536}, "worker_metrics_port"),
        ({"worker_temporal_metrics_port": 70000}, "worker_temporal_metrics_port"),
        ({"api_metrics_port": 65536}, "api_metrics_port"),
        ({"kafka_fetch_max_wait_ms": 0}, "kafka_fetch_max_wait_ms"),
        ({"kafka_fetch_max_wait_ms": 5000}, "kafka_fetch_max_wait_ms"),
        ({"dm_heartbeat_seconds": 0}, "dm_heartbeat_seconds"),
        ({"dm_heartbeat_seconds": -5}, "dm_heartbeat_seconds"),
        ({"dm_presence_fresh_seconds": 0}, "dm_presence_fresh_seconds"),
        ({"dm_presence_fresh_seconds": -1}, "dm_presence_fresh_seconds"),
        ({"access_token_ttl_seconds": 0}, "access_token_ttl_seconds"),
        ({"refresh_token_ttl_seconds": -1}, "refresh_token_ttl_seconds"),
        ({"authorize_code_ttl_seconds": 0}, "authorize_code_ttl_seconds"),
        ({"push_deadline_seconds": 0}, "push_deadline_seconds"),
        ({"max_request_bytes": 0}, "max_request_bytes"),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_setting(values: dict[str, Any], variable: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(env="test", **values)
    assert [error["loc"] for error in raised.value.errors()] == [(variable,)]


def test_zero_still_turns_off_the_optional_ports() -> None:
    settings = Settings(env="test", api_metrics_port=0, worker_metrics_port=0, worker_temporal_metrics_port=0)
    assert (
        settings.api_metrics_port,
        settings.worker_metrics_port,
        settings.worker_temporal_metrics_port,
    ) == (0, 0, 0)


@pytest.mark.parametrize(("heartbeat", "fresh"), [(15, 15), (20, 15), (5, 4.9)])
def test_the_dm_heartbeat_must_beat_within_the_presence_window(heartbeat: float, fresh: float) -> None:
    with pytest.raises(ValidationError, match="SOSOHAPPY_DM_HEARTBEAT_SECONDS must be below"):
        Settings(env="test", dm_heartbeat_seconds=heartbeat, dm_presence_fresh_seconds=fresh)
    assert Settings(env="test", dm_heartbeat_seconds=fresh / 2, dm_presence_fresh_seconds=fresh)
