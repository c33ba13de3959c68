"""``GET /`` (the original's text), liveness and readiness. The Prometheus metrics are on a port of their
own (``api.metrics.serve_metrics``), not here."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Literal

import pymongo
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel
from pymongo import MongoClient

from api.deps import ResourcesDep
from api.metrics import DEPENDENCY_UP
from storage.db import check_database

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

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
    """``/readyz``: 200 ``ok`` or ``degraded``, 503 ``unavailable``; a status word only. What is down, and
    why, goes to the log (``event: readiness``) and to ``sosohappy_dependency_up`` on the metrics port:
    an error's text names hosts, users and drivers, which are nobody's business outside."""

    status: Literal["ok", "degraded", "unavailable"]


@router.get("/healthz")
async def healthz() -> Liveness:
    """Liveness: the process answers. On the event loop, never in the request threads: those may all
    be waiting on a stalled database (which readiness reports), and a liveness probe failing then would
    restart every replica for an outage a restart cannot fix."""
    return Liveness(status="ok")


#: Every route needs the relational store; without it the replica cannot serve and leaves the Service.
#: Nor is a replica ready before its revocation view has read the database's revocation records.
REQUIRED = ("database", "revocations")
#: Each of these takes down only some routes (sign-in, DMs) or has a fallback (revocations from the
#: database, DMs delivered locally), and is shared by every replica: failing readiness on them would
#: take all replicas out of the Service at once and turn a partial outage into a total one.
DEGRADING = ("temporal", "mongo", "kafka")


#: Seconds each dependency check of ``/readyz`` may take (the kubelet's probe gives up after 3 s).
READY_CHECK_SECONDS = 3


def _ping_mongo(client: MongoClient) -> None:
    """Ping MongoDB, giving up with the check: a server that went silent would otherwise hold this
    thread of the loop's default executor until the client notices (20 to 30 s), and a few probes'
    pings would take every thread the database check needs (``min(32, CPUs + 4)`` of them), turning
    a MongoDB outage into ``unavailable`` on every replica at once."""
    with pymongo.timeout(READY_CHECK_SECONDS):
        client.admin.command("ping")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(res: ResourcesDep, request: Request) -> JSONResponse:
    """Readiness: 503 when the database does not answer (or the revocation view has not read it yet);
    200 otherwise, ``"degraded"`` when Temporal, MongoDB or Kafka do not. Each dependency's result sets
    ``sosohappy_dependency_up``; a change of what is down is logged with the reasons."""

    async def temporal() -> None:
        await res.temporal.service_client.check_health(timeout=timedelta(seconds=2))

    async def database() -> None:
        await asyncio.to_thread(check_database, res.engine)

    async def mongo() -> None:
        await asyncio.to_thread(_ping_mongo, res.mongo)

    async def kafka() -> None:
        producer = res.producer
        if producer is None:
            raise RuntimeError("not connected")
        await producer.client.fetch_all_metadata()

    checks = {"temporal": temporal, "database": database, "mongo": mongo, "kafka": kafka}

    async def run(check) -> str:
        try:
            await asyncio.wait_for(check(), timeout=READY_CHECK_SECONDS)
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
    _log_change(request, status, down, results)
    return JSONResponse(Readiness(status=status).model_dump(), status_code=200 if serving else 503)


def _log_change(request: Request, status: str, down: list[str], results: dict[str, str]) -> None:
    """One line when this replica's readiness changes (the probe asks every few seconds): what is down
    and each check's reason."""
    state = (status, tuple(down))
    if getattr(request.app.state, "readiness", None) == state:
        return
    request.app.state.readiness = state
    line = {"event": "readiness", "status": status, "down": down, "checks": results}
    if down:
        reasons = "; ".join(f"{name} {results[name]}" for name in down)
        log.warning("readiness %s: %s", status, reasons, extra=line)
    else:
        log.info("readiness ok", extra=line)
