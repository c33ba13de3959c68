"""``GET /`` (the original's text), liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from api.deps import ResourcesDep
from api.metrics import DEPENDENCY_UP
from storage.db import check_database

router = APIRouter(tags=["health"])

ROOT_TEXT = "sosohappy don't operate a website.\n"


def root() -> str:
    """The original answered any request to ``/`` with this line."""
    return ROOT_TEXT


for _method in ("GET", "HEAD", "POST"):
    router.add_api_route(
        "/",
        root,
        methods=[_method],
        response_class=PlainTextResponse,
        operation_id="root" if _method == "GET" else f"root{_method.title()}",
    )


class Liveness(BaseModel):
    """``/healthz``."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """``/readyz``: 200 ``ok`` or ``degraded`` (naming what is down), 503 ``unavailable``."""

    status: Literal["ok", "degraded", "unavailable"]
    down: list[str]
    checks: dict[str, str] = Field(description='each dependency: "ok" or "down: <why>"')


@router.get("/healthz")
def healthz() -> Liveness:
    """Liveness: the process answers."""
    return Liveness(status="ok")


#: Every route needs the relational store; without it the replica cannot serve and leaves the Service.
#: Nor is a replica ready before its revocation view has read the database's revocation records.
REQUIRED = ("database", "revocations")
#: Each of these takes down only some routes (sign-in, DMs) or has a fallback (revocations from the
#: database, DMs delivered locally), and is shared by every replica: failing readiness on them would
#: take all replicas out of the Service at once and turn a partial outage into a total one.
DEGRADING = ("temporal", "mongo", "kafka")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(res: ResourcesDep) -> JSONResponse:
    """Readiness: 503 when the database does not answer (or the revocation view has not read it yet);
    200 otherwise, ``"degraded"`` and naming them when Temporal, MongoDB or Kafka do not. Each
    dependency's result also sets ``sosohappy_dependency_up``."""

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
    for name, result in results.items():
        DEPENDENCY_UP.labels(name).set(result == "ok")
    if res.settings.revocation_view_enabled:
        results["revocations"] = "ok" if res.revocations.seeded else "down: not seeded from the database yet"
    down = [name for name, status in results.items() if status != "ok"]
    serving = not any(name in REQUIRED for name in down)
    status: Literal["ok", "degraded", "unavailable"] = (
        "unavailable" if not serving else "degraded" if down else "ok"
    )
    body = Readiness(status=status, down=down, checks=results)
    return JSONResponse(body.model_dump(), status_code=200 if serving else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
