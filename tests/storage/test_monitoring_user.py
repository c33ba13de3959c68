"""The read-only monitoring user (``storage.monitoring_user``), on the test MySQL/MariaDB server: created by
the pre-start step when an admin URL and a password are set, converged on every run (password, exactly its
privileges), able to read the server's state and unable to read any table."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pymysql
import pytest
from sqlalchemy.engine import URL, make_url

from storage.monitoring_user import ensure_monitoring_user
from tests.storage.helpers import run_prestart


def _connect(url: URL, user: str | None = None, password: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=user or url.username or "root",
        password=password if user else (url.password or ""),
        autocommit=True,
    )


@pytest.fixture
def server(mysql_url: str) -> URL:
    """The test server as its admin (the URL of the session's database, without the database)."""
    return make_url(mysql_url).set(database="")


@pytest.fixture
def monitor_user(server: URL) -> Iterator[str]:
    """A user name nobody has on the server (users are server-wide); dropped after the test."""
    name = f"mon_{uuid.uuid4().hex[:10]}"
    yield name
    with _connect(server) as conn:
        conn.cursor().execute(f"DROP USER IF EXISTS '{name}'@'%'")


def _grants(server: URL, user: str) -> list[str]:
    with _connect(server) as conn:
        cur = conn.cursor()
        cur.execute(f"SHOW GRANTS FOR '{user}'@'%'")
        return [row[0] for row in cur.fetchall()]


def _admin_url(server: URL) -> str:
    return server.render_as_string(hide_password=False)


def test_the_user_reads_server_state_and_no_table(server: URL, monitor_user: str, mysql_url: str) -> None:
    ensure_monitoring_user(_admin_url(server), monitor_user, "first-pass'word%s")
    with _connect(server, monitor_user, "first-pass'word%s") as conn:
        cur = conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        assert cur.fetchone()[0] == "Threads_connected"
        cur.execute("SHOW GLOBAL VARIABLES LIKE 'max_connections'")
        assert int(cur.fetchone()[1]) > 0
        cur.execute("SHOW SLAVE STATUS")  # allowed (REPLICATION CLIENT / REPLICA MONITOR); no replica here
        assert cur.fetchall() == ()
        database = make_url(mysql_url).database
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute(f"SELECT COUNT(*) FROM `{database}`.users")
        assert refused.value.args[0] in (1142, 1044)  # command denied / access denied
        with pytest.raises(pymysql.err.OperationalError):
            cur.execute("SELECT COUNT(*) FROM mysql.user")
        cur.execute("SHOW PROCESSLIST")  # without PROCESS: its own sessions only, no other statement
        assert {row[1] for row in cur.fetchall()} == {monitor_user}


def test_every_run_converges_password_and_privileges(server: URL, monitor_user: str) -> None:
    ensure_monitoring_user(_admin_url(server), monitor_user, "one")
    expected = _grants(server, monitor_user)
    with _connect(server) as conn:  # someone widened it by hand
        conn.cursor().execute(f"GRANT SELECT, PROCESS ON *.* TO '{monitor_user}'@'%'")
    ensure_monitoring_user(_admin_url(server), monitor_user, "two")

    assert _grants(server, monitor_user) != [] and [
        g.split(" IDENTIFIED BY")[0] for g in _grants(server, monitor_user)
    ] == [g.split(" IDENTIFIED BY")[0] for g in expected]
    assert not any("SELECT" in g or "PROCESS" in g for g in _grants(server, monitor_user))
    with _connect(server, monitor_user, "two"):
        pass
    with pytest.raises(pymysql.err.OperationalError):
        _connect(server, monitor_user, "one")


def test_bad_input_is_refused_before_anything_runs(server: URL) -> None:
    with pytest.raises(ValueError, match="user name"):
        ensure_monitoring_user(_admin_url(server), "x'; DROP USER root; --", "pw")
    with pytest.raises(ValueError, match="password"):
        ensure_monitoring_user(_admin_url(server), "mon_ok", "")
    with pytest.raises(ValueError, match="not a MySQL server"):
        ensure_monitoring_user("sqlite:///x.db", "mon_ok", "pw")


def _prestart_env(mysql_url: str, mongo_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    return env | {
        "SOSOHAPPY_ENV": "test",
        "SOSOHAPPY_DATABASE_URL": mysql_url,
        "SOSOHAPPY_MONGO_URL": mongo_url,
        "SOSOHAPPY_MONGO_DATABASE": f"dm_{uuid.uuid4().hex[:8]}",
        **extra,
    }


def test_the_pre_start_step_creates_the_user_when_given_an_admin_url(
    server: URL, monitor_user: str, mysql_url: str, mongo_url: str
) -> None:
    skipped = run_prestart(
        _prestart_env(mysql_url, mongo_url, SOSOHAPPY_MONITORING_DATABASE_USER=monitor_user)
    )
    assert skipped.returncode == 0, skipped.stderr
    events = [json.loads(line).get("event") for line in skipped.stderr.splitlines()]
    assert "monitoring_user_skipped" in events
    with _connect(server) as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM mysql.user WHERE user = %s", (monitor_user,))
        assert cur.fetchone()[0] == 0

    env = _prestart_env(
        mysql_url,
        mongo_url,
        SOSOHAPPY_DATABASE_ADMIN_URL=_admin_url(server),
        SOSOHAPPY_MONITORING_DATABASE_USER=monitor_user,
        SOSOHAPPY_MONITORING_DATABASE_PASSWORD="s3cret-monitor",
    )
    for _ in range(2):  # idempotent: the second run changes nothing and succeeds
        done = run_prestart(env)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines()]
        assert "monitoring_user_ready" in [line.get("event") for line in lines]
        assert "s3cret-monitor" not in done.stderr
    with _connect(server, monitor_user, "s3cret-monitor") as conn:
        conn.cursor().execute("SHOW GLOBAL STATUS LIKE 'Uptime'")
