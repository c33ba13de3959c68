"""The database, broker and Temporal-server series that ``k8s/monitoring`` reads exist where they come from.

MySQL: Debian's ``prometheus-mysqld-exporter``, run with the collector flags of the Deployment as the
monitoring user the migration Job creates (``storage.monitoring_user``, so with exactly its privileges),
is scraped against the test MariaDB (with a throwaway database migrated and read) and against a
throwaway MariaDB replica of a throwaway primary (the replication series exist only on a replica).
Temporal: the dev server's own ``/metrics`` after a few calls. Percona's mongodb_exporter and the Kafka
Exporter cannot be run here: their names are checked against the documented lists in
``tests/k8s/exporter_metrics``. Every metric, matched label and grouped-by label a rule or dashboard
uses with an exporter's job must be there, as ``test_live_scrape`` checks the API's.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pymysql
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio.client import Client

from devstack.processes import ManagedProcess, free_port
from storage.db import create_db_engine
from storage.monitoring_user import ensure_monitoring_user
from temporal.devserver import start_dev_args
from tests.fixtures.databases import DEFAULT_TEST_DATABASE_URL, scratch_mysql_database
from tests.k8s.manifests import OVERLAYS, named, render
from tests.k8s.monitoring import Scrape, exporter_metrics, unknown_names_and_labels
from tests.k8s.tools import tool_or_skip

LISTS = Path(__file__).parent / "exporter_metrics"
MYSQLD_EXPORTER = "prometheus-mysqld-exporter"
#: The collector whose series exist only on a replica (SHOW SLAVE STATUS has no row on a primary).
REPLICA_ONLY = "mysql_slave_status_"


def documented(name: str) -> dict[str, set[str]]:
    """Metric -> label names, from one of the documented lists (``metric label,label`` lines)."""
    found: dict[str, set[str]] = {}
    for line in (LISTS / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            metric, _, labels = line.partition(" ")
            found[metric] = set(filter(None, labels.split(",")))
    return found


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _metrics(port: int) -> str:
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    except httpx.TransportError:
        return ""
    return resp.text if resp.status_code == 200 else ""


def collector_flags() -> list[str]:
    """The collector switches the mysqld_exporter Deployment runs with."""
    deployment = named(render(OVERLAYS / "small"), "Deployment", "sosohappy-mysqld-exporter")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [a for a in container["args"] if a.startswith(("--collect.", "--no-collect."))]


def scrape_mysqld_exporter(exe: str, logs: Path, host: str, port: int, user: str, password: str) -> str:
    """Run Debian's mysqld_exporter against ``host:port`` as ``user`` and return one scrape once it sees
    the server (``mysql_up 1``)."""
    listen = free_port()
    argv = [exe, f"--web.listen-address=127.0.0.1:{listen}", *collector_flags()]
    dsn = {"DATA_SOURCE_NAME": f"{user}:{password}@tcp({host}:{port})/"}
    proc = ManagedProcess("mysqld-exporter", argv, logs / f"mysqld-exporter-{port}.log", env=dsn)
    proc.start().wait_for_port(listen, timeout=60)
    try:
        _wait_for(lambda: "\nmysql_up 1" in _metrics(listen), f"mysqld_exporter to log in to {host}:{port}")
        return _metrics(listen)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exporter-logs")


@pytest.fixture(scope="module")
def primary_scrape(logs: Path) -> Iterator[str]:
    """mysqld_exporter on the test MariaDB, as a fresh monitoring user, after reads of a migrated database."""
    exe = tool_or_skip(MYSQLD_EXPORTER, f"Debian/Ubuntu: apt-get install {MYSQLD_EXPORTER}")
    admin = make_url(os.environ.get("SOSOHAPPY_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL))
    user, password = f"mon_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    ensure_monitoring_user(admin.render_as_string(hide_password=False), user, password)
    try:
        with scratch_mysql_database("sosohappy_exporter") as url:
            engine = create_db_engine(url)
            with engine.connect() as conn:
                conn.execute(text("SELECT COUNT(*) FROM users"))
            engine.dispose()
            yield scrape_mysqld_exporter(
                exe, logs, admin.host or "127.0.0.1", admin.port or 3306, user, password
            )
    finally:
        engine = create_db_engine(admin.render_as_string(hide_password=False))
        with engine.connect() as conn:
            conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
        engine.dispose()


def _mariadbd(name: str, datadir: Path, port: int, server_id: int, logs: Path) -> ManagedProcess:
    argv = [
        tool_or_skip("mariadbd", "Debian/Ubuntu: apt-get install mariadb-server"),
        "--no-defaults",
        f"--datadir={datadir}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={datadir}.sock",
        f"--pid-file={datadir}.pid",
        f"--server-id={server_id}",
        f"--log-bin={datadir}-bin",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=16M",
        f"--user={getpass.getuser()}",
    ]
    return ManagedProcess(name, argv, logs / f"{name}.log").start().wait_for_port(port, timeout=120)


@pytest.fixture(scope="module")
def replica_scrape(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """mysqld_exporter on a replica: a throwaway MariaDB primary and its replica, replicating."""
    exe = tool_or_skip(MYSQLD_EXPORTER, f"Debian/Ubuntu: apt-get install {MYSQLD_EXPORTER}")
    install = tool_or_skip("mariadb-install-db", "Debian/Ubuntu: apt-get install mariadb-server")
    root = tmp_path_factory.mktemp("mariadb-pair")
    done = subprocess.run(
        [install, "--no-defaults", f"--datadir={root / 'primary'}", "--auth-root-authentication-method=normal",
         "--skip-test-db", f"--user={getpass.getuser()}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    shutil.copytree(
        root / "primary", root / "replica"
    )  # the same empty server; MariaDB tells them by server id
    ports = free_port(), free_port()
    servers = [_mariadbd("mariadb-primary", root / "primary", ports[0], 1, logs)]
    try:
        servers.append(_mariadbd("mariadb-replica", root / "replica", ports[1], 2, logs))
        with pymysql.connect(host="127.0.0.1", port=ports[0], user="root", autocommit=True) as conn:
            conn.cursor().execute("CREATE USER 'repl'@'%' IDENTIFIED BY 'repl'")
            conn.cursor().execute("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'")
        with pymysql.connect(host="127.0.0.1", port=ports[1], user="root", autocommit=True) as conn:
            cur = conn.cursor(pymysql.cursors.DictCursor)
            cur.execute(
                f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={ports[0]}, MASTER_USER='repl', "
                "MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos"
            )
            cur.execute("START SLAVE")

            def replicating() -> bool:
                cur.execute("SHOW SLAVE STATUS")
                row = cur.fetchone()
                return row is not None and row["Seconds_Behind_Master"] is not None

            _wait_for(replicating, "the replica to replicate", timeout=120)
        ensure_monitoring_user(
            f"mysql+pymysql://root@127.0.0.1:{ports[1]}/", "sosohappy_monitor", "monitor-pw"
        )
        yield scrape_mysqld_exporter(exe, logs, "127.0.0.1", ports[1], "sosohappy_monitor", "monitor-pw")
    finally:
        for server in reversed(servers):
            server.stop()


def test_every_mysql_metric_and_label_used_is_in_a_mysqld_exporter_scrape(
    primary_scrape: str, replica_scrape: str
) -> None:
    scrape = Scrape()
    scrape.add("primary", primary_scrape)
    scrape.add("replica", replica_scrape)
    used = {name for name, job in exporter_metrics().items() if job == "sosohappy-mysql"}
    assert {
        "mysql_up",
        "mysql_global_status_slow_queries",
        "mysql_slave_status_seconds_behind_master",
    } <= used
    assert not unknown_names_and_labels("sosohappy-mysql", scrape.labels)
    # The primary's scrape alone has everything but the replication series: the monitoring user's
    # privileges (no PROCESS, no SELECT) are enough for every other panel and rule.
    primary = scrape.jobs["primary"]
    replica_only = {name for name in used if name.startswith(REPLICA_ONLY)}
    assert used - set(primary) == replica_only and replica_only <= set(scrape.jobs["replica"])
    assert "mysql_global_status_innodb_buffer_pool_read_requests" in primary


def test_every_mongodb_metric_and_label_used_is_documented_for_the_exporter_version() -> None:
    version = named(render(OVERLAYS / "small"), "Deployment", "sosohappy-mongodb-exporter")
    (container,) = version["spec"]["template"]["spec"]["containers"]
    tag = container["image"].rpartition(":")[2]
    assert f"v{tag}" in (LISTS / "mongodb_exporter.txt").read_text(), "the list is for another version"
    names = documented("mongodb_exporter.txt")
    assert not unknown_names_and_labels("sosohappy-mongodb", names.get)
    assert {"mongodb_ss_opcounters", "mongodb_collstats_storageStats_count"} <= {
        n for n, job in exporter_metrics().items() if job == "sosohappy-mongodb"
    }


def test_every_kafka_exporter_metric_and_label_used_is_documented() -> None:
    assert not unknown_names_and_labels("kafka-exporter", documented("kafka_exporter.txt").get)
    assert "kafka_consumergroup_lag" in exporter_metrics()


async def _exercise(address: str) -> None:
    """Calls that every Temporal service answers: a namespace lookup, a list, a start nobody works on."""
    client = await Client.connect(address, namespace="default")
    await client.start_workflow(
        "MonitoringProbe", id=f"probe-{uuid.uuid4().hex}", task_queue="monitoring-probe"
    )
    async for _ in client.list_workflows():
        pass


@pytest.fixture(scope="module")
def temporal_server_scrape(tmp_path_factory: pytest.TempPathFactory, logs: Path) -> Iterator[str]:
    """The Temporal dev server's own /metrics (the same server code as the Helm chart's services)."""
    port, metrics = free_port(), free_port()
    argv = start_dev_args(port=port, ui_port=None, db_file=tmp_path_factory.mktemp("temporal") / "t.db")
    argv += ["--http-port", str(free_port()), "--metrics-port", str(metrics)]
    proc = (
        ManagedProcess("temporal-metrics", argv, logs / "temporal.log")
        .start()
        .wait_for_port(port, timeout=90)
    )
    try:
        asyncio.run(_exercise(f"127.0.0.1:{port}"))
        _wait_for(lambda: 'service_name="history"' in _metrics(metrics), "the history service's metrics")
        yield _metrics(metrics)
    finally:
        proc.stop()


@pytest.mark.slow
def test_every_temporal_server_metric_and_label_used_is_in_the_servers_scrape(
    temporal_server_scrape: str,
) -> None:
    scrape = Scrape()
    scrape.add("temporal-server", temporal_server_scrape)
    failures_only = documented("temporal_server.txt")
    assert not set(failures_only) & set(scrape.jobs["temporal-server"]), "now scraped: drop it from the list"

    def labels_of(metric: str) -> set[str] | None:
        return scrape.labels(metric) or failures_only.get(metric)

    assert not unknown_names_and_labels("temporal-server", labels_of)
    assert {"service_latency_bucket", "persistence_errors"} <= set(exporter_metrics())


def test_exporter_metrics_are_always_selected_with_their_job() -> None:
    """The scrape checks split the expressions by job: a metric of an exporter selected without its job
    (or under another) would be checked by none of them."""
    from tests.k8s.monitoring import metric_name, parsed_expressions, selector_job, vector_selectors

    jobs = exporter_metrics()
    stray = {
        f"{metric_name(s)} ({expr.where})"
        for expr in parsed_expressions()
        for s in vector_selectors(expr.ast)
        if metric_name(s) in jobs and selector_job(s) != jobs[metric_name(s)]
    }
    assert not stray, "\n".join(sorted(stray))
