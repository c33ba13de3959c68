"""Prometheus metrics of the API process, the port that serves them, and the middleware that records
every request.

The metrics are served on a port of their own (``SOSOHAPPY_API_METRICS_PORT``, ``serve_metrics``), not
on the API's port: the ingress routes only the client's paths to the API's port, and nothing routes to
this one. The middleware also gives each request an id (``X-Request-ID``, taken from the client when
sane) and writes one log line per HTTP request and per WebSocket connection: never headers, query
strings, bodies or tokens.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.request_context import RequestContext, close_request, open_request, request_id_from

REQUESTS = Counter(
    "sosohappy_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "sosohappy_http_request_duration_seconds",
    "HTTP request latency by route template and method",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DEPENDENCY_UP = Gauge(
    "sosohappy_dependency_up",
    "1 when the backing service answered this replica's last readiness check, else 0",
    ["dependency"],
)
PAGES_BEYOND_REACH = Counter(
    "sosohappy_feed_pages_beyond_reach_total",
    "Listing pages answered empty because no mark of the caller's was within reach (feeds.paging)",
    ["listing"],
)

IMAGE_BUDGET_REFUSALS = Counter(
    "sosohappy_feed_image_budget_refusals_total",
    "saveFeed requests answered 429: their images would take their user over the daily image budget",
)


@dataclass(frozen=True)
class MetricsPort:
    """This process's metrics served over HTTP from a daemon thread (prometheus_client's server), so a
    scrape needs nothing of the event loop and answers even while it is busy."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server.server_port)

    def stop(self) -> None:
        """Stop answering and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(host: str, port: int) -> MetricsPort:
    """Serve the process's metrics (the default registry) at ``http://host:port/metrics``. One per
    process: the registry is the process's, and ``api.serve`` runs one uvicorn process (no workers)."""
    server, thread = start_http_server(port, addr=host)
    return MetricsPort(server, thread)


#: The logger of the one-line-per-request records.
request_log = logging.getLogger("api.requests")

REQUEST_ID_HEADER = b"X-Request-ID"
_REQUEST_ID_LOOKUP = REQUEST_ID_HEADER.lower()


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name.lower() == _REQUEST_ID_LOOKUP:
            return request_id_from(value)
    return request_id_from(None)


def _with_request_id(message: Message, request_id: bytes) -> Message:
    """``message`` (a response start or a WebSocket accept) with ``X-Request-ID`` appended as a raw
    tuple: every other header goes to the wire exactly as the app set it."""
    return {**message, "headers": [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]}


#: The methods that are label values (and log fields) as sent; any other is ``OTHER``. The method is
#: whatever the client writes (uvicorn and ingress-nginx pass any token through), so taken as is it
#: would let an anonymous caller mint a new time series per request.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"


def method_label(method: str) -> str:
    """``method`` when it is a standard one, else ``"other"``: the bounded label of a request."""
    return method if method in METHODS else OTHER


def route_template(scope: Scope) -> str:
    """The route template of the request (its bounded label), ``unmatched`` before or without one."""
    return getattr(scope.get("route"), "path", None) or "unmatched"


def _line(scope: Scope, record: RequestContext, started: float) -> dict[str, Any]:
    """The fields every request and WebSocket line shares (path without its query string)."""
    line: dict[str, Any] = {
        "request_id": record.request_id,
        "route": route_template(scope),
        "path": scope.get("path", ""),
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    if record.user_id is not None:
        line["user_id"] = record.user_id
    if record.workflow_id is not None:
        line["workflow_id"] = record.workflow_id
    client = scope.get("client")
    if client:
        line["client_ip"] = client[0]
    return line


class MetricsMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead) that counts, times and logs requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500
        record, token = open_request(_request_id(scope))
        request_id = record.request_id.encode()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = _with_request_id(message, request_id)
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            template = route_template(scope)
            method = method_label(scope["method"])
            elapsed = time.perf_counter() - start
            REQUESTS.labels(template, method, str(status)).inc()
            LATENCY.labels(template, method).observe(elapsed)
            if request_log.isEnabledFor(logging.INFO):
                line = {"event": "http_request", "method": method, "status": status}
                line.update(_line(scope, record, start))
                if error is not None:
                    line["error"] = error
                request_log.info("%s %s %d", method, template, status, extra=line)
            close_request(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        record, token = open_request(_request_id(scope))
        request_id = record.request_id.encode()
        close_code: int | None = None
        accepted = False

        async def receive_wrapper() -> Message:
            nonlocal close_code
            message = await receive()
            if message["type"] == "websocket.disconnect" and close_code is None:
                close_code = message.get("code", 1005)
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal close_code, accepted
            if message["type"] == "websocket.accept":
                accepted = True
                message = _with_request_id(message, request_id)
            elif message["type"] == "websocket.close" and close_code is None:
                close_code = message.get("code", 1000)
            elif message["type"] == "websocket.http.response.start" and close_code is None:
                close_code = message["status"]  # refused before the upgrade with an HTTP answer
                message = _with_request_id(message, request_id)
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            line = {"event": "websocket", "accepted": accepted, **_line(scope, record, start)}
            line["close_code"] = close_code
            if error is not None:
                line["error"] = error
            request_log.info("websocket %s closed (%s)", line["route"], close_code, extra=line)
            close_request(token)
