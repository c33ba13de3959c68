"""The private stack of the outbox tests (``test_outbox.py``): its own MySQL database, broker, Temporal
dev server, worker and API app, so a test can stop Temporal and start it again, and helpers to wait on
conditions and read metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import select

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from storage.models import User, WorkflowOutbox
from temporal.devserver import start_dev_args, wait_until_serving
from tests.fixtures.app import BackgroundWorker
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.databases import scratch_mysql_database
from tests.fixtures.ios_client import IOSClient


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 120) -> None:
    """Wait for ``predicate`` with a generous deadline (a condition, never a speed)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached")
        time.sleep(0.1)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class PrivateTemporal:
    """A Temporal dev server of this module that tests stop and start again, with its state or fresh."""

    def __init__(self, directory: Path) -> None:
        self.port, self._dir, self._runs = free_port(), directory, 0
        self._db = directory / "temporal-0.db"
        self._proc: ManagedProcess | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, fresh: bool = False) -> None:
        if fresh:
            self._runs += 1
            self._db = self._dir / f"temporal-{self._runs}.db"
        argv = start_dev_args(port=self.port, ui_port=None, db_file=self._db)
        self._proc = ManagedProcess("temporal-outbox", argv, self._dir / "temporal.log").start()
        self._proc.wait_for_port(self.port, timeout=90)
        wait_until_serving(self.address)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()


@dataclass
class Stack:
    """The private backend: settings, stores, Temporal, a worker and the API at ``url``."""

    settings: Settings
    deps: ActivityDeps
    temporal: PrivateTemporal
    url: str
    worker: BackgroundWorker | None = None

    def start_worker(self) -> None:
        self.worker = BackgroundWorker(self.settings, self.deps)
        self.worker.start()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    @contextmanager
    def temporal_away(self, *, fresh: bool = False) -> Iterator[None]:
        """The worker and the Temporal server stopped for the block, then started again (``fresh``: the
        server without its earlier state) and the worker with it, whatever the block did."""
        self.stop_worker()
        self.temporal.stop()
        try:
            yield
        finally:
            self.temporal.start(fresh=fresh)
            self.start_worker()

    def client(self, app: IOSClient | None = None) -> IOSClient:
        http = httpx.Client(base_url=self.url, timeout=60)
        return IOSClient(http) if app is None else IOSClient(http, access=app.access, email=app.email)

    def outbox_rows(self) -> list[WorkflowOutbox]:
        with self.deps.sessions() as s:
            return list(s.scalars(select(WorkflowOutbox).order_by(WorkflowOutbox.id)))


@contextmanager
def private_stack(settings: Settings, directory: Path) -> Iterator[Stack]:
    """The stack, serving until the block ends (its servers stopped and its database dropped then)."""
    database = ExitStack()
    database_url = database.enter_context(scratch_mysql_database("sosohappy_outbox"))
    kafka_port = free_port()
    broker = ManagedProcess("kafka-outbox", broker_argv(kafka_port), directory / "kafka.log").start()
    temporal = PrivateTemporal(directory)
    deps: ActivityDeps | None = None
    stack: Stack | None = None
    try:
        broker.wait_for_port(kafka_port)
        temporal.start()
        private = settings.model_copy(
            update={
                "database_url": database_url,
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "temporal_address": temporal.address,
                "mongo_database": f"dm_outbox_{uuid.uuid4().hex[:6]}",
                "outbox_poll_seconds": 0.2,
                "outbox_retry_max_seconds": 1.0,
            }
        )
        deps = ActivityDeps.open(private)
        with serve_in_thread(create_app(private), http="h11") as url:
            stack = Stack(private, deps, temporal, url)
            stack.start_worker()
            yield stack
    finally:
        if stack is not None:
            stack.stop_worker()
        temporal.stop()
        broker.stop()
        if deps is not None:
            deps.close()
        database.close()


def member(stack: Stack) -> tuple[IOSClient, str, int]:
    app = stack.client()
    nickname = "o" + uuid.uuid4().hex[:7]
    app.sign_up(nickname)
    with stack.deps.sessions() as s:
        user_id = s.scalars(select(User.id).where(User.nickname == nickname)).one()
    return app, nickname, user_id
