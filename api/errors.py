"""Domain errors and the single place that maps them (and framework errors) to HTTP answers.

Every error body is ``{"status": <int>, "error": <reason phrase>, "message": <why>, "path": <path>}``;
the iOS client never reads error bodies, people and logs do.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pymongo.errors import ConnectionFailure
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.resources import ServiceUnavailable
from config.logging import safe_error_text

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An expected failure with the status it is answered with and a reason for the caller."""

    status = 400

    #: Extra response headers (e.g. ``Retry-After``).
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    """Missing or malformed input (400)."""

    status = 400


class Forbidden(ApiError):
    """Bad or expired token, a revoked login or an account that is gone (403: the client's refresh
    trigger); a refused sign-in. Never for what a new token cannot change (``NotTheCaller``)."""

    status = 403


class NotTheCaller(ApiError):
    """A valid token, but a parameter that must name the caller (its nickname or e-mail) names someone
    else, or a conversation the caller is not part of (400). Not 403: the iOS client answers every 403
    of an authed call with a token re-issue and a retry, with no retry limit (CLIENT_CONTRACT §2.3), so
    a 403 that a new token cannot fix would loop forever, rotating the refresh token each time; a
    device still holding a nickname renamed on another device would do exactly that."""

    status = 400


class NotFound(ApiError):
    """The addressed thing does not exist (404)."""

    status = 404


class Conflict(ApiError):
    """The request collides with existing state, e.g. a taken nickname (409)."""

    status = 409


class PayloadTooLarge(ApiError):
    """An upload over the configured limits (413)."""

    status = 413


class RequestTimeout(ApiError):
    """A request body that stopped arriving (408)."""

    status = 408


class UnsatisfiableRange(ApiError):
    """A ``Range`` wholly past the end of the representation (416); ``Content-Range`` gives its size."""

    status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.headers = {"Content-Range": f"bytes */{size}"}


class TooManyRequests(ApiError):
    """The caller is over a rate limit (429); ``Retry-After`` says when to come back."""

    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class ServerBusy(ApiError):
    """This server is at a limit of its own for now, whoever asks (503); ``Retry-After: 1``."""

    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": "1"}


class ErrorBody(BaseModel):
    """The body of every refusal and failure (the client never reads it; people and logs do)."""

    status: int = Field(description="the HTTP status", examples=[400])
    error: str = Field(description="the status's reason phrase", examples=["Bad Request"])
    message: str = Field(description="why, naming the field at fault", examples=["date is required"])
    path: str = Field(description="the request path", examples=["/feed-service/saveFeed"])


#: What each documented error status means across the API.
_MEANINGS = {
    400: "missing or malformed input, or a parameter naming someone other than the caller; `message` says which",
    403: "a bad, expired or revoked token, or an account that is gone (the client re-issues its tokens)",
    404: "the addressed thing does not exist or is not visible to the caller",
    409: "the request collides with existing state (a taken nickname)",
    413: "the body or an upload is over its size limit",
    416: "the `Range` starts past the end of the image; `Content-Range` gives its size",
    429: "over the sign-in rate limit, over the day's image budget (saveFeed), or the server takes in as "
    "many large uploads as it may at once; `Retry-After` says when to come back",
    503: "a store or Temporal is unavailable, or every request thread stayed busy; retry after "
    "`Retry-After` seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for ``statuses``, each with the ``ErrorBody`` model."""
    return {status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses}


def error_response(
    status: int, message: str, path: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error body every failure uses."""
    body = ErrorBody(status=status, error=HTTPStatus(status).phrase, message=message, path=path)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


#: How a failed field reads, in the words the original parameter checks used.
_FIELD_MESSAGES = {
    "missing": "{field} is required",
    "int_parsing": "{field} must be an integer, got {input!r}",
    "int_type": "{field} must be an integer, got {input!r}",
    "bool_parsing": "{field} must be true or false",
    "bool_type": "{field} must be true or false",
    "greater_than_equal": "{field} must be at least {ge}",
    "less_than_equal": "{field} must be at most {le}",
    "less_than": "{field} must be less than {lt}",
    "string_too_long": "{field} must be at most {max_length} characters",
    "string_type": "{field} must be a string",
    "too_long": "{field} must have at most {max_length} items, got {actual_length}",
    "field_reason": "{field} {reason}",
    "reason": "{message}",
}


def _validation_reason(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form"))
        template = _FIELD_MESSAGES.get(str(err.get("type")))
        if template is not None and loc:
            value = err.get("input")
            shown = value[:40] if isinstance(value, str) else value
            parts.append(template.format(field=loc, input=shown, **err.get("ctx", {})))
        else:
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and anything unexpected to JSON answers."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, request.url.path, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_reason(exc), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(
            exc.status_code, str(exc.detail), request.url.path, getattr(exc, "headers", None)
        )

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        # Lost or refused connections, a server gone silent, lock timeouts, deadlocks, every pooled
        # connection held by requests waiting on it: nothing was committed; the client may retry.
        log.warning("database error on %s: %s", request.url.path, safe_error_text(exc))
        return error_response(
            503, "the database is unavailable, try again", request.url.path, {"Retry-After": "1"}
        )

    # pymysql reports a connection it already found dead as InterfaceError, the pool a checkout that
    # found no free connection in time as TimeoutError: both the database's unavailability, not a bug.
    for database_error in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(database_error, _database_down)

    @app.exception_handler(ConnectionFailure)
    async def _mongo_down(request: Request, exc: ConnectionFailure) -> JSONResponse:
        log.warning("MongoDB unreachable on %s: %s", request.url.path, exc)
        return error_response(503, "mongodb is unavailable", request.url.path, {"Retry-After": "1"})

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return error_response(503, str(exc), request.url.path, {"Retry-After": "1"})
