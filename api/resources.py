"""Per-process clients of the API: one DB engine, one Mongo client, one Temporal client, one Kafka producer.

They are created in the FastAPI lifespan (never at import time) and reached through ``api.deps``.
Temporal and Kafka connect in the background and keep retrying, so a replica starts (and serves what it
can) while one of them is down; ``/readyz`` says which.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import MongoClient
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker
from temporalio.client import Client

from accounts.revocations import RevocationView
from accounts.tokens import TokenIssuer
from api.image_spools import SpoolBudget
from api.kafka import broadcast_producer
from config import Settings
from dm.messages import MessageStore
from dm.messages import connect as connect_mongo
from storage.db import REQUEST_WAITS, create_db_engine, session_factory
from temporal.client import connect as connect_temporal

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """A backing service this request needs is not reachable right now (answered with 503)."""

    def __init__(self, service: str) -> None:
        super().__init__(f"{service} is unavailable")
        self.service = service


@dataclass
class Resources:
    """The long-lived clients of one API process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker
    mongo: MongoClient
    messages: MessageStore
    tokens: TokenIssuer
    revocations: RevocationView
    #: The disk this process's image downloads may spool at once (``api.image_streams``).
    image_spools: SpoolBudget
    _temporal: Client | None = None
    _producer: AIOKafkaProducer | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: Callbacks run at shutdown, newest first (consumers, caches added by feature modules).
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _temporal_up: asyncio.Event = field(default_factory=asyncio.Event)
    #: Wakes this process's outbox drainer (``api.outbox``; set in the lifespan, a no-op before).
    wake_outbox: Callable[[], None] = lambda: None

    @property
    def temporal(self) -> Client:
        """The Temporal client, or ``ServiceUnavailable`` while it is not connected."""
        if self._temporal is None:
            raise ServiceUnavailable("temporal")
        return self._temporal

    async def temporal_connected(self) -> Client:
        """The Temporal client, once connected (for work that needs it, like the sign-in worker)."""
        await self._temporal_up.wait()
        return self.temporal

    @property
    def temporal_if_connected(self) -> Client | None:
        """The Temporal client, or ``None`` while it is not connected (for fire-and-forget starts)."""
        return self._temporal

    @property
    def producer(self) -> AIOKafkaProducer | None:
        """The Kafka producer once connected; ``None`` while the broker is unreachable."""
        return self._producer

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run ``closer`` when the process shuts down."""
        self._closers.append(closer)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run a background task owned by this process; it is cancelled at shutdown if still running
        and forgotten once done."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _retry_forever(what: str, attempt: Callable[[], Awaitable[None]]) -> None:
    delay = 0.2
    while True:
        try:
            await attempt()
            log.info("%s connected", what)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure means "retry later"
            log.warning("%s not reachable (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def open_resources(settings: Settings) -> Resources:
    """Create the process's clients; Temporal and Kafka keep connecting in the background."""
    # A request meeting a stalled or locked database is answered 503 within the app's patience.
    engine = create_db_engine(
        settings.sqlalchemy_url, pool_size=settings.database_pool_size, waits=REQUEST_WAITS
    )
    mongo = connect_mongo(settings.mongo_url, selection_ms=2000)
    messages = MessageStore(mongo, settings.mongo_database)
    res = Resources(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        mongo=mongo,
        messages=messages,
        tokens=TokenIssuer(settings),
        # Refresh tokens are always checked against the database; the view only has to outlive the
        # access tokens issued before a revocation.
        revocations=RevocationView(settings.access_token_ttl_seconds),
        image_spools=SpoolBudget(settings.download_spool_bytes),
    )

    async def temporal_attempt() -> None:
        res._temporal = await connect_temporal(settings)
        res._temporal_up.set()

    async def kafka_attempt() -> None:
        producer = broadcast_producer(settings)
        try:
            await producer.start()
        except Exception:
            await producer.stop()
            raise
        res._producer = producer

    res.spawn(_retry_forever("temporal", temporal_attempt), "connect-temporal")
    res.spawn(_retry_forever("kafka", kafka_attempt), "connect-kafka")
    # Give both a moment so a healthy stack is ready as soon as the API answers.
    await asyncio.wait(list(res._tasks), timeout=3)
    return res


async def close_resources(res: Resources) -> None:
    """Stop background work and close every client."""
    for closer in reversed(res._closers):
        try:
            await closer()
        except Exception:  # shutdown goes on
            log.exception("error while closing")
    tasks = list(res._tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if res._producer is not None:
        await res._producer.stop()
    res.mongo.close()
    res.engine.dispose()
