"""The worker's health server: ``/metrics``, ``/healthz`` and ``/readyz`` on one port, for Prometheus
and the Kubernetes probes.

Liveness is the event loop's own heartbeat: a task stamps the time every second, and a stamp older than
``stale_after`` seconds (a blocked or dead loop) answers 503. Readiness needs every worker polling and
a recent successful Temporal health check. The HTTP server runs in a thread (stdlib), so it still
answers, with 503, when the loop is stuck.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from temporalio.client import Client
from temporalio.worker import Worker

log = logging.getLogger(__name__)


class WorkerHealth:
    """Liveness and readiness of one worker process, updated by its event loop, read by the server."""

    def __init__(
        self,
        *,
        stale_after: float = 30.0,
        beat_interval: float = 1.0,
        check_interval: float = 10.0,
        check_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after, self.beat_interval = stale_after, beat_interval
        self.check_interval, self.check_timeout = check_interval, check_timeout
        self._clock = clock
        self._last_beat = clock()
        self._workers: Sequence[Worker] = ()
        self._temporal_ok_at: float | None = None
        self._temporal_error: str | None = None
        self._stopping = False

    def watch(self, workers: Sequence[Worker]) -> None:
        """The workers that must all be polling for the process to be ready."""
        self._workers = list(workers)

    def stopping(self) -> None:
        """The process is draining: no longer ready."""
        self._stopping = True

    async def keep_beating(self) -> None:
        """Stamp the time every ``beat_interval`` seconds, for as long as the loop runs this task."""
        while True:
            self.beat()
            await asyncio.sleep(self.beat_interval)

    def beat(self) -> None:
        """Stamp the time: the loop is alive now."""
        self._last_beat = self._clock()

    async def keep_checking(self, client: Client) -> None:
        """Ask Temporal's health service every ``check_interval`` seconds."""
        while True:
            await self.check_temporal(client)
            await asyncio.sleep(self.check_interval)

    async def check_temporal(self, client: Client) -> None:
        """One health check of the Temporal frontend; the result is what ``/readyz`` reports."""
        try:
            serving = await client.service_client.check_health(timeout=timedelta(seconds=self.check_timeout))
        except Exception as exc:
            self._temporal_error = f"{type(exc).__name__}: {exc}"[:200]
        else:
            if serving:
                self._temporal_ok_at, self._temporal_error = self._clock(), None
            else:
                self._temporal_error = "the frontend reports NOT_SERVING"

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the event loop stamped its heartbeat within ``stale_after`` seconds."""
        age = self._clock() - self._last_beat
        alive = age <= self.stale_after
        body: dict[str, Any] = {"status": "ok" if alive else "stale", "heartbeat_age_seconds": round(age, 3)}
        return alive, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether every worker polls and Temporal answered a recent health check; else the reasons."""
        queues = {w.task_queue: "polling" if w.is_running else "not polling" for w in self._workers}
        reasons: list[str] = []
        if self._stopping:
            reasons.append("shutting down")
        if not self._workers:
            reasons.append("workers not started")
        idle = sorted(q for q, state in queues.items() if state != "polling")
        if idle:
            reasons.append(f"not polling: {', '.join(idle)}")
        if self._temporal_error is not None:
            reasons.append(f"temporal health check failed: {self._temporal_error}")
        elif self._temporal_ok_at is None:
            reasons.append("temporal not checked yet")
        elif self._clock() - self._temporal_ok_at > 3 * self.check_interval + self.check_timeout:
            reasons.append("temporal health check is overdue")
        body: dict[str, Any] = {"status": "not ready" if reasons else "ready", "workers": queues}
        if reasons:
            body["reason"] = "; ".join(reasons)
        return not reasons, body


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` served from a daemon thread."""

    def __init__(
        self, health: WorkerHealth, host: str, port: int, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(health, registry))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on (useful when created with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Start answering."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(health: WorkerHealth, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, body = health.liveness() if path == "/healthz" else health.readiness()
                self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._answer(404, b'{"status": "not found"}', "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the worker's log

    return Handler
