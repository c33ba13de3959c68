"""``GET /``, liveness, readiness and metrics of the API on the real servers: readiness answers a status
word (the reasons are logged), the metrics are on their own port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text

from activities.deps import ActivityDeps
from api.main import create_app
from api.metrics import serve_metrics
from api.routes.health import ROOT_TEXT
from config import Settings
from devstack.processes import free_port
from storage.models import Feed
from tests.api.feed_helpers import kst, like, member, unique_year, user_id
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.logs import captured_logs
from tests.fixtures.waiting import wait_until


def test_root_answers_the_original_text(http: httpx.Client) -> None:
    resp = http.get("/")
    assert resp.status_code == 200
    assert resp.text == "sosohappy don't operate a website.\n" == ROOT_TEXT


def test_healthz(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}


def test_readyz_answers_a_status_word(http: httpx.Client) -> None:
    resp = http.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "ok"}


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    """This test process's metrics port, as ``python -m api.serve`` serves it beside the API."""
    served = serve_metrics("127.0.0.1", free_port())
    yield f"http://127.0.0.1:{served.port}/metrics"
    served.stop()


def test_metrics_count_requests_by_route_on_their_own_port(http: httpx.Client, metrics_url: str) -> None:
    http.get("/healthz")
    text = httpx.get(metrics_url, timeout=30).text
    assert 'sosohappy_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert http.get("/metrics").status_code == 404  # not on the API's port, which the ingress routes


def test_unknown_path_is_a_json_404(http: httpx.Client) -> None:
    resp = http.get("/no-such-path")
    assert resp.status_code == 404
    assert resp.json()["path"] == "/no-such-path"


def _readiness(settings: Settings, metrics_url: str) -> tuple[httpx.Response, dict[str, float], list[dict]]:
    """``/readyz`` of a replica built from ``settings``, its ``sosohappy_dependency_up`` values and the
    readiness lines it logged."""
    with captured_logs() as logs, serve_in_thread(create_app(settings), http="h11") as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
        text = httpx.get(metrics_url, timeout=30).text
    gauges = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^sosohappy_dependency_up\{dependency="(\w+)"\} (\S+)$', text, re.M)
    }
    return ready, gauges, logs.lines(event="readiness")


def test_a_partial_outage_keeps_the_replica_ready_but_degraded(settings: Settings, metrics_url: str) -> None:
    # MongoDB is shared by every replica: failing readiness on it would empty the Service.
    dead_mongo = settings.model_copy(update={"mongo_url": f"mongodb://127.0.0.1:{free_port()}"})
    ready, gauges, lines = _readiness(dead_mongo, metrics_url)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "degraded"}  # no error text for whoever asks
    assert gauges == {"temporal": 1.0, "database": 1.0, "mongo": 0.0, "kafka": 1.0}
    (line,) = lines  # the reasons go to the log, once per change
    assert line["level"] == "WARNING" and line["down"] == ["mongo"]
    assert line["checks"]["mongo"].startswith("down: ") and line["checks"]["database"] == "ok"


def test_without_the_database_the_replica_is_not_ready(settings: Settings, metrics_url: str) -> None:
    dead_db = settings.model_copy(update={"database_url": f"mysql+pymysql://root@127.0.0.1:{free_port()}/x"})
    ready, gauges, lines = _readiness(dead_db, metrics_url)
    assert ready.status_code == 503, ready.text
    assert ready.json() == {"status": "unavailable"}
    assert "OperationalError" not in ready.text and "127.0.0.1" not in ready.text
    assert gauges["database"] == 0.0 and gauges["mongo"] == 1.0
    # Nor could the revocation view read the revocation records.
    (line,) = lines
    assert line["status"] == "unavailable" and line["down"] == ["database", "revocations"]
    assert "OperationalError" in line["checks"]["database"]


def test_a_made_up_method_adds_no_series(http: httpx.Client, metrics_url: str) -> None:
    """The method is the client's own token: any besides the standard ones counts as ``other``, so an
    anonymous caller cannot grow the registry (or a scrape) by a series per request."""
    for name in ("ZAAAB", "ZAAAC", "Q" * 2000):
        assert http.request(name, "/healthz").status_code == 405
    text = httpx.get(metrics_url, timeout=30).text
    assert 'sosohappy_http_requests_total{method="other",route="/healthz",status="405"}' in text
    assert "ZAAA" not in text and "QQQQ" not in text


def _lock_waits(deps: ActivityDeps) -> int:
    """Statements waiting for a row lock now (the server's process list)."""
    with deps.engine.connect() as conn:
        query = "SELECT COUNT(*) FROM information_schema.processlist WHERE info LIKE '%FOR UPDATE%'"
        return int(conn.execute(text(query)).scalar_one()) - 1  # less this very query


def test_liveness_answers_while_every_request_thread_waits_on_the_database(
    settings: Settings, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """One request thread (``database_pool_size`` 1), held by a like waiting for a row lock: ``/healthz``
    still answers at once, so a stalled database never fails liveness (and restarts the replica)."""
    author, fan, year = member(http), member(http), unique_year()
    date = kst(year, 1, 1)
    assert author.save_feed(date).status_code == 200
    app = create_app(settings.model_copy(update={"database_pool_size": 1}))
    with (
        serve_in_thread(app, http="h11") as url,
        httpx.Client(base_url=url, timeout=120) as replica,
        ThreadPoolExecutor(1) as pool,
        activity_deps.engine.connect() as holder,
    ):
        fan_there = IOSClient(replica, access=fan.access, email=fan.email, nickname=fan.nickname)
        with holder.begin():
            entry = select(Feed.id).where(Feed.user_id == user_id(activity_deps, author.nickname))
            holder.execute(entry.where(Feed.date == date).with_for_update()).one()
            liked = pool.submit(like, fan_there, author.nickname, date)
            wait_until(lambda: _lock_waits(activity_deps) > 0 or liked.done(), "the like waiting")
            assert not liked.done()
            assert replica.get("/healthz", timeout=10).json() == {"status": "ok"}
        assert liked.result(timeout=120).status_code == 200
