"""``GET /`` (the original's text), liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import ResourcesDep
from storage.db import check_database

router = APIRouter(tags=["health"])

ROOT_TEXT = "sosohappy don't operate a website.\n"


@router.api_route("/", methods=["GET", "HEAD", "POST"], response_class=PlainTextResponse)
def root() -> str:
    """The original answered any request to ``/`` with this line."""
    return ROOT_TEXT


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(res: ResourcesDep) -> JSONResponse:
    """Readiness: 200 when Temporal, the database, MongoDB and Kafka all answer, else 503 naming the rest."""

    async def temporal() -> None:
        await res.temporal.service_client.check_health(timeout=timedelta(seconds=2))

    async def database() -> None:
        await asyncio.to_thread(check_database, res.engine)

    async def mongo() -> None:
        await asyncio.to_thread(res.mongo.admin.command, "ping")

    async def kafka() -> None:
        producer = res.producer
        if producer is None:
            raise RuntimeError("not connected")
        await producer.client.fetch_all_metadata()

    checks = {"temporal": temporal, "database": database, "mongo": mongo, "kafka": kafka}

    async def run(check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=3)
            return "ok"
        except Exception as exc:  # any failure means "down"
            return f"down: {type(exc).__name__}: {exc}"[:200]

    results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
    down = [name for name, status in results.items() if status != "ok"]
    body = {"status": "ok" if not down else "unavailable", "down": down, "checks": results}
    return JSONResponse(body, status_code=200 if not down else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
