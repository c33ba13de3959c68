"""``GET /``, liveness, readiness and metrics of the API on the real servers."""

from __future__ import annotations

import httpx

from api.routes.health import ROOT_TEXT


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
    assert body["down"] == []
    assert set(body["checks"]) == {"temporal", "database", "mongo", "kafka"}


def test_metrics_count_requests_by_route(http: httpx.Client) -> None:
    http.get("/healthz")
    text = http.get("/metrics").text
    assert 'sosohappy_http_requests_total{method="GET",route="/healthz",status="200"}' in text


def test_unknown_path_is_a_json_404(http: httpx.Client) -> None:
    resp = http.get("/no-such-path")
    assert resp.status_code == 404
    assert resp.json()["path"] == "/no-such-path"
