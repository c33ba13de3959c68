"""Fixtures of the DM domain tests: the storage tests' engines (MySQL, then SQLite), and empty databases
of a test's own (no other test's renames in them)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from storage.db import create_db_engine, migrate
from tests.fixtures.servers import DEFAULT_TEST_DATABASE_URL
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
    base = make_url(os.environ.get("SOSOHAPPY_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    name = f"sosohappy_dm_{uuid.uuid4().hex[:10]}"
    server = pymysql.connect(
        host=base.host or "127.0.0.1",
        port=base.port or 3306,
        user=base.username or "root",
        password=base.password or "",
        autocommit=True,
    )
    server.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = base.set(database=name).render_as_string(hide_password=False)
    mysql = None
    try:
        migrate(url)
        mysql = create_db_engine(url)
        yield mysql
    finally:
        if mysql is not None:
            mysql.dispose()
        server.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()
