"""The settings refuse unsafe secrets outside local development, and each one is documented."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings
from config.settings import DEFAULT_JWT_SECRET


@pytest.fixture
def no_sosohappy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``SOSOHAPPY_*`` variable inherited from the shell running the tests."""
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_an_unset_env_fails_closed_on_the_default_jwt_secret(no_sosohappy_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="SOSOHAPPY_JWT_SECRET must be set in env 'production'"):
        Settings()


@pytest.mark.parametrize("env", ["local", "test"])
def test_an_explicit_local_env_accepts_the_default_jwt_secret(
    env: str, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    no_sosohappy_env.setenv("SOSOHAPPY_ENV", env)
    settings = Settings()
    assert settings.env == env and settings.is_local and settings.jwt_secret == DEFAULT_JWT_SECRET


@pytest.mark.parametrize("env", ["staging", "production"])
def test_staging_and_production_refuse_the_default_jwt_secret(
    env: str, no_sosohappy_env: pytest.MonkeyPatch
) -> None:
    no_sosohappy_env.setenv("SOSOHAPPY_ENV", env)
    with pytest.raises(ValidationError, match="SOSOHAPPY_JWT_SECRET must be set"):
        Settings()
    with pytest.raises(ValidationError, match="SOSOHAPPY_JWT_SECRET must be set"):
        Settings(env=env)  # type: ignore[arg-type]


def test_production_accepts_a_configured_secret() -> None:
    assert Settings(env="production", jwt_secret="x" * 64).jwt_secret == "x" * 64


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
