"""Fixtures of the storage tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.db import create_db_engine
from tests.fixtures.databases import scratch_mysql_database


@pytest.fixture(params=["mysql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The session's migrated MySQL database, then its SQLite file."""
    engine = create_db_engine(request.getfixturevalue(f"{request.param}_url"))
    yield engine
    engine.dispose()


@pytest.fixture(params=["mysql", "sqlite"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each dialect, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    with scratch_mysql_database("sosohappy_mig", revision=None) as url:
        yield url
