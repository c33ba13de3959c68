"""Load shedding: a request that cannot get a request thread within ``SOSOHAPPY_REQUEST_THREAD_WAIT_SECONDS``
is answered 503 with ``Retry-After`` instead of waiting in the thread queue for as long as it takes.

The API's database work runs in anyio's thread pool: sync routes and dependencies, and every
``run_in_threadpool`` of an async route, borrow a token of anyio's default thread limiter, sized to the
database pool (``SOSOHAPPY_DATABASE_POOL_SIZE``). While MySQL stalls, each thread holds its token for up
to the request's database waits (``storage.db.REQUEST_WAITS``); a burst meanwhile would queue on the
limiter with no deadline, and its requests would be answered (or start writing) long after the app and
the ingress gave up on them at 60 s.

``RequestThreads`` replaces the default limiter: a request's first thread is waited for at most the
configured seconds, and one not free by then raises ``Overloaded`` (the route's 503, counted in
``sosohappy_requests_shed_total`` by route template). The request's code never ran, so nothing it
would have changed is changed. Once a request has had a thread it has started, and its later threads
(the rest of its work, a streamed image's chunks, a background task it spawned since) are waited for
as before: a running request is never cut off between its writes. Checking the caller's token
(``check_in_thread``) is not the request's work and does not start it.

``SheddingMiddleware`` marks each HTTP request and DM socket handshake as one not started yet; anything
else (the outbox drainer, the revocation view, the sign-in worker) waits as before. ``/healthz`` needs
no thread and ``/readyz`` checks the stores in the event loop's own executor, so both answer however
busy the threads are; metrics are served from a thread of their own (``api.metrics``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import anyio
from anyio import to_thread
from anyio._backends import _asyncio
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError
from api.metrics import route_template

SHED = Counter(
    "sosohappy_requests_shed_total",
    "Requests answered 503 (DM handshakes: closed with 1013) because no request thread was free within "
    "SOSOHAPPY_REQUEST_THREAD_WAIT_SECONDS, by route template",
    ["route"],
)
#: Seconds a shed request is told to wait: a few statements' time, for the queue to drain.
RETRY_AFTER_SECONDS = 5


class Overloaded(ApiError):
    """No request thread was free within the wait (503); the request never started."""

    status = 503

    def __init__(self, wait: float) -> None:
        super().__init__(f"the server is busy (no request thread free within {wait:g} s), try again")
        self.headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}


@dataclass
class _Admission:
    """One request's: how long its first thread may be waited for, and whether it has had one."""

    wait: float
    #: The request's scope: routing names its route in it before any dependency runs.
    scope: Scope
    started: bool = False


P = ParamSpec("P")
T = TypeVar("T")

_ADMISSION: ContextVar[_Admission | None] = ContextVar("sosohappy_admission", default=None)


class RequestThreads(_asyncio.CapacityLimiter):
    """anyio's limiter of the asyncio backend, with a deadline on a request's first token."""

    __slots__ = ()

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        """A token for ``borrower``: within the request's wait when it has not started yet (else
        ``Overloaded``), as long as it takes otherwise."""
        admission = _ADMISSION.get()
        if admission is None or admission.started:
            await super().acquire_on_behalf_of(borrower)
            return
        try:
            with anyio.fail_after(admission.wait):
                await super().acquire_on_behalf_of(borrower)
        except TimeoutError:
            SHED.labels(route_template(admission.scope)).inc()
            raise Overloaded(admission.wait) from None
        admission.started = True


async def check_in_thread(check: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a read-only admission check (the database's word on a token while the revocation view
    cannot say) on a request thread, shed as the request's first thread would be, but leaving the
    request not started: its own work still gets a thread within the wait, or is shed untouched."""
    admission = _ADMISSION.get()
    before = admission is not None and admission.started
    try:
        return await run_in_threadpool(check, *args, **kwargs)
    finally:
        if admission is not None:
            admission.started = before


def install_request_threads(threads: int) -> RequestThreads:
    """Make a ``RequestThreads`` of ``threads`` tokens the running event loop's default thread limiter
    (call it in the lifespan, before any thread is used). anyio has no public setter: this sets the
    asyncio backend's own run variable, and fails loudly if anyio stops reading it."""
    limiter = RequestThreads(threads)
    _asyncio._default_thread_limiter.set(limiter)
    if to_thread.current_default_thread_limiter() is not limiter:
        raise RuntimeError("anyio no longer reads its default thread limiter from _default_thread_limiter")
    return limiter


class SheddingMiddleware:
    """Pure ASGI middleware marking each HTTP request and WebSocket handshake as not started, with
    ``wait`` seconds for its first request thread (``RequestThreads``)."""

    def __init__(self, app: ASGIApp, wait: float) -> None:
        self.app = app
        self.wait = wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        admission = _Admission(self.wait, scope)
        token = _ADMISSION.set(admission)
        try:
            await self.app(scope, receive, send)
        finally:
            _ADMISSION.reset(token)
