"""Fixtures shared by the k8s checks."""

from __future__ import annotations

import pytest

from tests.k8s.dockerfile import DOCKERFILE, Stage, parse_stages


@pytest.fixture(scope="session")
def stages() -> list[Stage]:
    """The build stages of the repository's Dockerfile."""
    return parse_stages(DOCKERFILE.read_text())
