"""What the current HTTP request or WebSocket is about, for its log lines.

The middleware (``api.metrics``) opens a ``RequestContext`` per request; the code that learns who is
calling (``api.security``) or which workflow the request started (``api.push``, ``api.routes.auth``)
fills it in. The record is mutable and shared, so what a sync route sets in its threadpool copy of the
context is seen by the middleware when it writes the request's line.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass

#: An incoming ``X-Request-ID`` is kept only when it looks like an id (no spaces, quotes or newlines).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass
class RequestContext:
    """The per-request record: its id, the authenticated user and the workflow it started."""

    request_id: str
    user_id: int | None = None
    workflow_id: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("sosohappy_request", default=None)


def request_id_from(header: bytes | str | None) -> str:
    """The client's request id when it is sane (≤ 128 chars of ``[A-Za-z0-9._-]``), else a new uuid4 hex."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def open_request(request_id: str) -> tuple[RequestContext, Token[RequestContext | None]]:
    """Make a fresh record current; hand the token to ``close_request`` when the request ends."""
    record = RequestContext(request_id)
    return record, _current.set(record)


def close_request(token: Token[RequestContext | None]) -> None:
    """Restore the context that was current before ``open_request``."""
    _current.reset(token)


def current() -> RequestContext | None:
    """The record of the request being handled, if any."""
    return _current.get()


def bind_user(user_id: int) -> None:
    """Record the authenticated caller of the current request (no-op outside a request)."""
    record = _current.get()
    if record is not None:
        record.user_id = user_id


def bind_workflow(workflow_id: str) -> None:
    """Record the workflow the current request started or signalled (no-op outside a request)."""
    record = _current.get()
    if record is not None:
        record.workflow_id = workflow_id


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` and ``user_id`` of the current request to every record logged during it."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        if ctx is not None:
            if not hasattr(record, "request_id"):
                record.request_id = ctx.request_id
            if ctx.user_id is not None and not hasattr(record, "user_id"):
                record.user_id = ctx.user_id
        return True
