"""Fixtures of the DM domain tests: the storage tests' engines (MySQL, then SQLite), and empty databases
of a test's own (no other test's renames in them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from storage.db import create_db_engine, migrate
from tests.fixtures.databases import scratch_mysql_database
from tests.storage.conftest import engine

__all__ = ["engine", "own_engine"]


@pytest.fixture(params=["mysql", "sqlite"])
def own_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A new database migrated to head, on MySQL and on SQLite, dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        migrate(url)
        sqlite = create_db_engine(url)
        yield sqlite
        sqlite.dispose()
        return
    with scratch_mysql_database("sosohappy_dm") as url:
        mysql = create_db_engine(url)
        try:
            yield mysql
        finally:
            mysql.dispose()
