"""``GET /``, liveness, readiness and metrics of the API on the real servers."""

from __future__ import annotations

import re

import httpx

from api.main import create_app
from api.routes.health import ROOT_TEXT
from config import Settings
from devstack.processes import free_port
from tests.fixtures.asgi import serve_in_thread


def test_root_answers_the_original_text(http: httpx.Client) -> None:
    resp = http.get("/")
    assert resp.status_code == 200
    assert resp.text == "sosohappy don't operate a website.\n" == ROOT_TEXT


def test_healthz(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_every_backing_service(http: httpx.Client) -> None:
    resp = http.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["down"] == []
    assert set(body["checks"]) == {"temporal", "database", "mongo", "kafka", "revocations"}


def test_metrics_count_requests_by_route(http: httpx.Client) -> None:
    http.get("/healthz")
    text = http.get("/metrics").text
    assert 'sosohappy_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_unknown_path_is_a_json_404(http: httpx.Client) -> None:
    resp = http.get("/no-such-path")
    assert resp.status_code == 404
    assert resp.json()["path"] == "/no-such-path"


def _ready_and_gauges(settings: Settings) -> tuple[httpx.Response, dict[str, float]]:
    """``/readyz`` of a replica built from ``settings``, then its ``sosohappy_dependency_up`` values."""
    with serve_in_thread(create_app(settings), http="h11") as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
        text = httpx.get(f"{url}/metrics", timeout=30).text
    gauges = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^sosohappy_dependency_up\{dependency="(\w+)"\} (\S+)$', text, re.M)
    }
    return ready, gauges


def test_a_partial_outage_keeps_the_replica_ready_but_degraded(settings: Settings) -> None:
    # MongoDB is shared by every replica: failing readiness on it would empty the Service.
    dead_mongo = settings.model_copy(update={"mongo_url": f"mongodb://127.0.0.1:{free_port()}"})
    ready, gauges = _ready_and_gauges(dead_mongo)
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "degraded" and ready.json()["down"] == ["mongo"]
    assert gauges == {"temporal": 1.0, "database": 1.0, "mongo": 0.0, "kafka": 1.0}


def test_without_the_database_the_replica_is_not_ready(settings: Settings) -> None:
    dead_db = settings.model_copy(update={"database_url": f"mysql+pymysql://root@127.0.0.1:{free_port()}/x"})
    ready, gauges = _ready_and_gauges(dead_db)
    assert ready.status_code == 503, ready.text
    # Nor could the revocation view read the revocation records.
    assert ready.json()["status"] == "unavailable" and ready.json()["down"] == ["database", "revocations"]
    assert gauges["database"] == 0.0 and gauges["mongo"] == 1.0
