"""A cap on the large request bodies one API process takes in at a time.

A saveFeed carries up to two 25 MB images and a setProfile a picture; Starlette spools file parts past
1 MiB to disk and the store writes them a chunk at a time, so one upload costs little memory, but each
still holds a temporary file, a threadpool thread and a database transaction while it is written.
``LargeUploadLimit`` lets ``SOSOHAPPY_MAX_LARGE_UPLOADS`` requests whose body is over
``SOSOHAPPY_LARGE_UPLOAD_BYTES`` (or of unknown length) in at once; one more is answered 429 with
``Retry-After`` before a byte of its body is read (uvicorn discards the unread body and keeps the
connection). A body of unknown length (chunked) is also cut off with 413 once it passes
``SOSOHAPPY_MAX_REQUEST_BYTES``, the limit a declared length is checked against before parsing.

A slot is only for a caller whose access token holds (``admission``, checked from the headers and the
revocation view, without the database): anyone else gets the route's 403 before a byte of the body is
read, so callers without an account cannot take the slots. One user holds at most
``SOSOHAPPY_MAX_LARGE_UPLOADS_PER_USER`` of them (the app sends one saveFeed or setProfile at a time;
one more is answered 429 as above), so one account cannot take every slot of a process. Routes that take no token (sign-in,
re-issue, health) take no large body either: a declared length over the threshold is answered 413 at
once, and a body of unknown length is cut off with 413 past it, without a slot.

A slot is held only while the body keeps coming at a useful pace: a large body that sends nothing for
``SOSOHAPPY_UPLOAD_IDLE_SECONDS``, or that falls behind ``SOSOHAPPY_UPLOAD_MIN_BYTES_PER_SECOND`` on
average once ``SOSOHAPPY_UPLOAD_RATE_GRACE_SECONDS`` have passed, is answered 408 and gives its slot
back. Without the rate floor, a client (with a valid token) trickling a few bytes every minute would keep
a slot for as long as it likes, and a few of them would starve real uploads; with it, holding a slot
costs the holder the floor's bandwidth, and a body of ``n`` bytes holds it at most
``grace + n / floor`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import PayloadTooLarge, RequestTimeout, error_response

IN_FLIGHT = Gauge(
    "sosohappy_large_uploads_in_flight", "Requests with a large body this API process is taking in"
)
REFUSED = Counter(
    "sosohappy_large_uploads_refused_total",
    "Requests with a large body refused with 429: the process's cap was reached (process), or the "
    "caller's own (user)",
    ["cap"],
)
TIMED_OUT = Counter(
    "sosohappy_large_uploads_timed_out_total",
    "Large request bodies answered 408: nothing arrived for the idle limit (idle), or they fell "
    "behind the minimum rate (slow)",
    ["reason"],
)
#: Seconds a refused upload is told to wait: about what one large upload takes on a phone's uplink.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Admission:
    """What the token of a large body's request says: whose it is (``user_id``; ``None`` when the app
    cannot tell, e.g. before its resources exist), or why the route would refuse it (``refused``)."""

    user_id: int | None = None
    refused: str | None = None


@dataclass
class UploadSlots:
    """How many large bodies may be in flight in this process, and per user, and how many are."""

    limit: int
    #: A body over this many bytes counts as large (Starlette spools file parts to disk past 1 MiB).
    threshold: int
    #: A body of unknown length is cut off past this many bytes.
    max_body: int
    #: A large body that sends nothing for this many seconds is answered 408.
    idle_seconds: float = 60.0
    #: A large body that has not kept this average rate once ``rate_grace_seconds`` have passed since it
    #: was admitted is answered 408.
    min_bytes_per_second: int = 32 * 1024
    rate_grace_seconds: float = 10.0
    #: Large bodies one user may have in flight in this process at once.
    per_user: int = 2
    in_flight: int = 0
    #: In-flight large bodies by user id (only users with one or more).
    by_user: dict[int, int] = field(default_factory=dict)

    def refusal(self, user_id: int | None) -> tuple[str, str] | None:
        """Which cap (``process`` or ``user``) and why a new large body of ``user_id`` is refused, if it is."""
        if self.in_flight >= self.limit:
            return "process", f"this server is taking in {self.limit} large uploads already"
        if user_id is not None and self.by_user.get(user_id, 0) >= self.per_user:
            return "user", f"you are sending {self.per_user} large uploads to this server already"
        return None

    def take(self, user_id: int | None) -> None:
        """Count a large body of ``user_id`` in (one event loop per process: no lock needed)."""
        self.in_flight += 1
        IN_FLIGHT.inc()
        if user_id is not None:
            self.by_user[user_id] = self.by_user.get(user_id, 0) + 1

    def give_back(self, user_id: int | None) -> None:
        """Count a large body of ``user_id`` out."""
        self.in_flight -= 1
        IN_FLIGHT.dec()
        if user_id is not None:
            left = self.by_user[user_id] - 1
            if left:
                self.by_user[user_id] = left
            else:
                del self.by_user[user_id]


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` (``None``: chunked or absent)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _has_body(scope: Scope, length: int | None) -> bool:
    if length is not None:
        return length > 0
    return any(n.lower() == b"transfer-encoding" for n, _ in scope.get("headers", ()))


class LargeUploadLimit:
    """Pure ASGI middleware holding one of ``slots`` for each large request body until its response
    is done, and answering 429 when none is free."""

    def __init__(
        self,
        app: ASGIApp,
        slots: UploadSlots,
        admission: Callable[[Scope], Admission] = lambda _: Admission(),
        takes_token: Callable[[Scope], bool] = lambda _: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app, self.slots, self.admission, self.takes_token = app, slots, admission, takes_token
        #: Monotonic seconds the rate floor is measured with (tests move it instead of waiting).
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass small requests through; admit a large one if a slot is free, else refuse it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _declared_length(scope)
        if not _has_body(scope, length) or (length is not None and length <= self.slots.threshold):
            await self.app(scope, receive, send)
            return
        if not self.takes_token(scope):  # no account behind it: a small body or none, never a slot
            await self._small_only(scope, receive, send, length)
            return
        admission = self.admission(scope)
        if admission.refused is not None:  # the route would answer the same, after reading the body
            await error_response(403, admission.refused, scope.get("path", ""))(scope, receive, send)
            return
        slots, user_id = self.slots, admission.user_id
        full = slots.refusal(user_id)
        if full is not None:
            cap, reason = full
            REFUSED.labels(cap).inc()
            message = f"{reason}; retry in {RETRY_AFTER_SECONDS} s"
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            await error_response(429, message, scope.get("path", ""), headers)(scope, receive, send)
            return
        slots.take(user_id)
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                slots.give_back(user_id)

        async def sending(message: Message) -> None:
            # Given back with the last byte of the answer, not when the app returns: uvicorn starts
            # the connection's next request as soon as this one's answer is out, and a client that
            # uploads entry after entry on one connection must find its own slot free again.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                give_back()
            await send(message)

        body = receive if length is not None else _bounded(receive, slots.max_body)
        try:
            await self.app(scope, _paced(body, slots, self.clock), sending)
        finally:
            give_back()

    async def _small_only(self, scope: Scope, receive: Receive, send: Send, length: int | None) -> None:
        """A route that takes no token: 413 for a declared length over the threshold, else (a body of
        unknown length) the body cut off past the threshold and paced as a large one, without a slot."""
        limit = self.slots.threshold
        if length is not None:
            message = f"request body over {limit} bytes: this route takes no upload"
            await error_response(413, message, scope.get("path", ""))(scope, receive, send)
            return
        body = _paced(_bounded(receive, limit), self.slots, self.clock)
        await self.app(scope, body, send)


def _paced(receive: Receive, slots: UploadSlots, clock: Callable[[], float]) -> Receive:
    """``receive`` that raises ``RequestTimeout`` when the body's next part takes over
    ``slots.idle_seconds``, or when the body falls behind ``slots.min_bytes_per_second`` on average once
    ``slots.rate_grace_seconds`` have passed since now (``clock``): after ``seen`` bytes, the next part
    is due by ``start + grace + seen / rate``. Only while the body is being read: once it is complete,
    waiting for a disconnect is not limited, and a part that completes the body is never refused."""
    idle, rate, grace = slots.idle_seconds, slots.min_bytes_per_second, slots.rate_grace_seconds
    start, seen, complete = clock(), 0, False

    def too_slow() -> RequestTimeout:
        TIMED_OUT.labels("slow").inc()
        return RequestTimeout(
            f"the request body arrived slower than {rate} bytes per second (after {grace:g} s)"
        )

    async def paced() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()
        due = start + grace + seen / rate
        left = due - clock()
        if left <= 0:
            raise too_slow()
        try:
            async with asyncio.timeout(min(idle, left)):
                message = await receive()
        except TimeoutError:
            if left <= idle:
                raise too_slow() from None
            TIMED_OUT.labels("idle").inc()
            raise RequestTimeout(f"the request body sent nothing for {idle:g} s") from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = True
        elif clock() > due:  # arrived late (the wait is measured on the event loop's clock)
            raise too_slow()
        seen += len(message.get("body", b""))
        return message

    return paced


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises ``PayloadTooLarge`` once the body passes ``limit`` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
        return message

    return bounded
