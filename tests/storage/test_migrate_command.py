"""``python -m storage.migrate`` (the pre-start Job): waits for the database, migrates it to head, and
fails clearly, naming the database without its password, when it never answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url

from storage.db import alembic_config, create_db_engine

ROOT = Path(__file__).resolve().parents[2]


def _run(url: str, *args: str, mongo_url: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    env |= {"SOSOHAPPY_ENV": "test", "SOSOHAPPY_DATABASE_URL": url}
    if mongo_url is not None:  # the step converts the legacy messages after the schema (dm.migrate_messages)
        env |= {"SOSOHAPPY_MONGO_URL": mongo_url, "SOSOHAPPY_MONGO_DATABASE": f"dm_{uuid.uuid4().hex[:8]}"}
    return subprocess.Popen(
        [sys.executable, "-m", "storage.migrate", *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _server(url: URL) -> pymysql.Connection:
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        autocommit=True,
    )


@pytest.fixture
def fresh_database(mysql_url: str) -> Iterator[URL]:
    """The URL of a MySQL database name nobody created yet (dropped after the test)."""
    url = make_url(mysql_url).set(database=f"sosohappy_mig_{uuid.uuid4().hex[:10]}")
    yield url
    with _server(url) as conn:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{url.database}`")


def _create(url: URL) -> None:
    with _server(url) as conn:
        conn.cursor().execute(
            f"CREATE DATABASE `{url.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )


def _revision(url: str) -> str | None:
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert "users" in inspect(conn).get_table_names()
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_migrates_a_new_database_to_head_and_again_is_a_no_op(fresh_database: URL, mongo_url: str) -> None:
    _create(fresh_database)
    url = fresh_database.render_as_string(hide_password=False)
    for _ in range(2):
        proc = _run(url, "--timeout", "20", mongo_url=mongo_url)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert _revision(url) == _head()
        last = json.loads(err.splitlines()[-1])
        assert last["event"] == "migrated" and last["level"] == "INFO"
        assert last["database"] == fresh_database.render_as_string(hide_password=True)


def test_waits_for_a_database_that_appears_later(fresh_database: URL, mongo_url: str) -> None:
    url = fresh_database.render_as_string(hide_password=False)
    proc = _run(url, "--timeout", "60", mongo_url=mongo_url)
    assert proc.stderr is not None
    first = json.loads(proc.stderr.readline())  # the first refusal, before the database exists
    assert first["event"] == "database_wait" and first["attempt"] == 1
    assert first["database"] == fresh_database.render_as_string(hide_password=True)
    _create(fresh_database)
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest
    assert _revision(url) == _head()


def test_an_unreachable_database_fails_naming_it_without_its_password() -> None:
    proc = _run("mysql+pymysql://app:hunter2-secret@127.0.0.1:1/nowhere", "--timeout", "2")
    out, err = proc.communicate(timeout=120)  # a generous deadline: it gives up by its own 2 s budget
    assert proc.returncode == 1
    last = json.loads(err.splitlines()[-1])
    assert last["level"] == "ERROR" and last["event"] == "migrate_failed"
    assert "database mysql+pymysql://app:***@127.0.0.1:1/nowhere did not answer within 2s" in last["msg"]
    assert "hunter2-secret" not in out + err
    assert all(json.loads(line)["event"] == "database_wait" for line in err.splitlines()[:-1])
