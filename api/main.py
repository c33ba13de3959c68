"""The FastAPI application: ``create_app(settings)`` builds it; ``uvicorn api.main:app --factory`` runs it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from temporalio.runtime import Runtime, TelemetryConfig

from api.dm_limits import ConnectGate
from api.dm_logins import LoginSockets
from api.docs import install_docs, operation_id
from api.errors import install_error_handlers
from api.kafka import FollowedTopic, ReplicaFeed, TopicBroadcast
from api.metrics import MetricsMiddleware
from api.outbox import OutboxDrainer
from api.push import dm_push_in_background
from api.rate_limits import sign_in_limiter_from
from api.relay_seal import relay_seal
from api.request_context import RequestContextFilter
from api.resources import Resources, close_resources, open_resources
from api.revocations import start_revocation_view
from api.routes import auth, dm, dm_connect, feed, health, images, profile
from api.security import takes_token, token_paths, upload_admission
from api.shedding import SheddingMiddleware, install_request_threads
from api.sign_in_worker import start_sign_in_worker
from api.uploads import LargeUploadLimit, UploadSlots
from config import Settings
from config.logging import configure_logging, temporal_core_logging
from config.processes import Process, load_settings
from dm.hub import DirectMessageHub

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """Build the API; clients are opened in the lifespan, once per process. ``clock`` (monotonic
    seconds) drives the in-process rate limits and the large uploads' rate floor, so tests can move
    time instead of waiting. Without
    ``settings``, the API's own from the environment (refused when the API lacks what it needs)."""
    settings = settings or load_settings(Process.API)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's threadpool (40 threads by default); more threads than pooled
        # connections would only queue for, or open and close, connections. A request waits for its
        # first thread only so long (api.shedding).
        app.state.request_threads = install_request_threads(settings.database_pool_size)
        resources = await open_resources(settings)
        followed: list[FollowedTopic] = []
        if settings.revocation_view_enabled:
            followed.append(await start_revocation_view(resources))
        hub = _direct_message_hub(resources)
        # One consumer reads every broadcast topic of this replica (api.kafka.ReplicaFeed).
        followed.append(hub.followed())
        resources.spawn(ReplicaFeed(settings, "broadcasts", followed).run(), "follow-broadcasts")
        resources.spawn(hub.heartbeat(), "dm-presence-heartbeat")
        resources.spawn(_ensure_message_indexes(resources), "ensure-message-indexes")
        drainer = OutboxDrainer.for_resources(resources)
        resources.wake_outbox = drainer.wake
        resources.spawn(drainer.run(), "drain-workflow-outbox")
        resources.on_close(hub.close)
        start_sign_in_worker(resources)  # closed first: drained before the clients it uses
        app.state.resources, app.state.dm_hub = resources, hub
        try:
            yield
        finally:
            await close_resources(resources)

    # The API's description is for people developing against it: served in local development and
    # tests only, never on a deployed replica (nothing to learn there for anyone outside).
    described = settings.is_local
    app = FastAPI(
        title="SoSoHappy backend",
        version="0.1.0",
        summary="Happiness diary API, wire-compatible with the SoSoHappy iOS client",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Metrics are Prometheus's (api.metrics); FastAPI's native OpenTelemetry would otherwise ask
        # the environment's tracer, meter and logger providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        openapi_url="/openapi.json" if described else None,
        docs_url="/docs" if described else None,
        redoc_url="/redoc" if described else None,
    )
    app.state.clock = clock  # also the DM sockets' frame rate limits (api.dm_limits)
    app.state.dm_connects = ConnectGate(settings, clock)
    app.state.sign_in_limiter = sign_in_limiter_from(
        settings.sign_in_rate_limit_per_minute, settings.sign_in_rate_limit_burst, clock
    )
    app.state.upload_slots = UploadSlots(
        settings.max_large_uploads,
        settings.large_upload_bytes,
        settings.max_request_bytes,
        settings.upload_idle_seconds,
        settings.upload_min_bytes_per_second,
        settings.upload_rate_grace_seconds,
        settings.max_large_uploads_per_user,
    )
    # Inside MetricsMiddleware (added last, so outermost): refusals are counted and logged too.
    app.add_middleware(
        LargeUploadLimit,
        slots=app.state.upload_slots,
        admission=upload_admission,
        takes_token=takes_token,
        clock=clock,
    )
    # Inside MetricsMiddleware too: a request shed for want of a thread is counted and logged.
    app.add_middleware(SheddingMiddleware, wait=settings.request_thread_wait_seconds)
    app.add_middleware(MetricsMiddleware)
    install_error_handlers(app)
    modules = (health, auth, profile, feed, images, dm, dm_connect)
    for module in modules:
        app.include_router(module.router)
    app.state.token_paths = token_paths(module.router for module in modules)  # api.uploads
    install_docs(app, serve=described)
    return app


def _direct_message_hub(res: Resources) -> DirectMessageHub:
    """The replica's DM hub over this process's clients: Kafka for the other replicas (every record
    sealed with the relay keys, ``api.relay_seal``), DmPushWorkflow for receivers connected nowhere,
    and the revocation view closing the sockets of ended logins."""
    settings = res.settings
    broadcast = TopicBroadcast(
        settings.kafka_dm_topic, lambda: res.producer, relay_seal(settings), settings.kafka_dm_partitions
    )

    def start_push(sender_id: int, receiver_id: int, message_id: str) -> None:
        dm_push_in_background(res, sender_id, receiver_id, message_id)

    return DirectMessageHub(res.engine, res.messages, res.settings, broadcast, start_push, LoginSockets(res))


async def _ensure_message_indexes(res: Resources) -> None:
    """Create the message indexes (idempotent); MongoDB may come up after the API, so retry."""
    delay = 0.5
    while True:
        try:
            await run_in_threadpool(res.messages.ensure_indexes)
            return
        except Exception as exc:
            log.warning("message indexes not ensured yet (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)


def configure_api_logging(settings: Settings) -> None:
    """JSON (or text) lines carrying the request id and caller, Temporal Core's lines included."""
    configure_logging(settings, RequestContextFilter())
    # Before the lifespan connects the client: Core's own lines go through the same handler.
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=temporal_core_logging())), error_if_already_set=False
    )


def app() -> FastAPI:
    """Factory for ``uvicorn api.main:app --factory`` (settings from the environment)."""
    settings = load_settings(Process.API)
    configure_api_logging(settings)
    return create_app(settings)
