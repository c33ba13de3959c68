"""The settings refuse unsafe secrets outside local development, and each one is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings


def test_production_refuses_the_default_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="SOSOHAPPY_JWT_SECRET must be set"):
        Settings(env="production")


def test_production_accepts_a_configured_secret() -> None:
    assert Settings(env="production", jwt_secret="x" * 64).jwt_secret == "x" * 64


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(jwt_secret="short")


def test_environment_variables_use_the_sosohappy_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
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
