"""What a deployed replica's HTTP port shows besides the client's paths: its description (``/docs``,
``/redoc``, ``/openapi.json``, ``/asyncapi.json``) only in local development and tests, no metrics
(they are on their own port), and a readiness that says one word."""

from __future__ import annotations

import httpx
import pytest

from api.main import create_app
from config import Settings
from tests.fixtures.asgi import serve_in_thread

DESCRIPTION = ("/docs", "/redoc", "/openapi.json", "/asyncapi.json")


def test_local_development_and_tests_serve_the_description(api_url: str) -> None:
    for path in DESCRIPTION:
        assert httpx.get(f"{api_url}{path}", timeout=30).status_code == 200, path


@pytest.mark.parametrize("env", ["staging", "production"])
def test_a_deployed_replica_serves_no_description_and_no_metrics(settings: Settings, env: str) -> None:
    deployed = settings.model_copy(update={"env": env, "jwt_secret": "a-deployed-secret-" + "x" * 40})
    assert not deployed.is_local
    with serve_in_thread(create_app(deployed), http="h11") as url:
        for path in (*DESCRIPTION, "/metrics"):
            resp = httpx.get(f"{url}{path}", timeout=30)
            assert resp.status_code == 404, (path, resp.text)
            assert resp.headers["content-type"] == "application/json" and resp.json()["path"] == path
        assert httpx.get(f"{url}/readyz", timeout=30).json() == {"status": "ok"}
        assert httpx.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
