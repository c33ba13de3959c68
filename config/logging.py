"""Process logging: one JSON object per line on stderr (or readable text), uvicorn's loggers included.

Every process calls ``configure_logging(settings)`` once at start-up. Structured fields are passed as
``extra={...}`` and become top-level keys of the line; filters given to ``configure_logging`` (the API's
request context) add fields to every record.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from temporalio.runtime import LoggingConfig

    from config.settings import Settings

#: Attributes every ``LogRecord`` has; anything else on a record is a structured extra.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: Extras never written: Temporal Core's raw log object and uvicorn's ANSI-coloured copy of the message.
_HIDDEN_EXTRAS = frozenset({"temporal_log", "color_message"})
#: uvicorn configures these with handlers of its own; they must go through the root handler instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
_MARK = "_sosohappy_handler"
#: Libraries whose INFO lines carry full URLs, query strings included: only their warnings are kept.
QUIET_LOGGERS = ("httpx", "httpcore")


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of ``record`` (everything beyond the standard ``LogRecord`` attributes)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRS and key not in _HIDDEN_EXTRAS and not key.startswith("_")
    }


#: Packages whose errors quote the data they failed on: SQLAlchemy's the statement's bound values (the
#: engine hides them, ``storage.db``), MySQL's a duplicate key's value, pymongo's the documents of a
#: failed write (a message's text). Their exceptions are written with their type and code only.
_DATA_STORE_PACKAGES = frozenset({"sqlalchemy", "pymysql", "sqlite3", "pymongo", "bson"})


def is_data_store_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a database driver or SQLAlchemy (its text may quote data)."""
    return type(exc).__module__.partition(".")[0] in _DATA_STORE_PACKAGES


def _driver_error(exc: BaseException) -> str:
    """A driver's error by its type and code: MySQL's error number (pymysql's first argument) or
    MongoDB's error code."""
    code = getattr(exc, "code", None) if type(exc).__module__.startswith("pymongo") else None
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return type(exc).__name__ if code is None else f"{type(exc).__name__} {code}"


def safe_error_text(exc: BaseException) -> str:
    """``str(exc)``, except for a database driver's error (or SQLAlchemy's wrapper of one): the driver
    error's type and code, never its message (``pymysql IntegrityError 1062 (message withheld)``)."""
    if not is_data_store_error(exc):
        return str(exc)
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    if isinstance(orig, BaseException):
        driver = f"{type(orig).__module__.partition('.')[0]} {_driver_error(orig)}"
    else:
        driver = _driver_error(exc)
    return f"{driver} (message withheld)"


def _chain(exc: BaseException) -> list[tuple[BaseException, str]]:
    """``exc`` and its causes, newest first, each with how it led to the one before it."""
    chain: list[tuple[BaseException, str]] = []
    link, current = "", exc
    while id(current) not in {id(e) for e, _ in chain}:
        chain.append((current, link))
        if current.__cause__ is not None:
            link, current = _CAUSE, current.__cause__
        elif current.__context__ is not None and not current.__suppress_context__:
            link, current = _CONTEXT, current.__context__
        else:
            break
    return chain


def _involves_data_store(exc: BaseException, depth: int = 0) -> bool:
    """Whether a database driver's error is in ``exc``'s causes or in an exception group among them."""
    return depth < 8 and any(
        is_data_store_error(e)
        or (
            isinstance(e, BaseExceptionGroup)
            and any(_involves_data_store(s, depth + 1) for s in e.exceptions)
        )
        for e, _ in _chain(exc)
    )


def format_exception(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes as Python prints it, except that a database driver's
    error, also inside an exception group, is written as ``safe_error_text`` says."""
    if not _involves_data_store(exc):
        return "".join(traceback.format_exception(exc)).rstrip("\n")
    blocks = []
    for err, led_on in reversed(_chain(exc)):  # oldest first, as Python prints them
        frames = "".join(traceback.format_tb(err.__traceback__))
        head = "Traceback (most recent call last):\n" if frames else ""
        module = type(err).__module__
        name = type(err).__qualname__ if module == "builtins" else f"{module}.{type(err).__qualname__}"
        block = f"{head}{frames}{name}: {safe_error_text(err)}"
        if isinstance(err, BaseExceptionGroup):
            for i, sub in enumerate(err.exceptions, 1):
                block += f"\n+---------------- {i} ----------------\n"
                block += "\n".join(f"| {line}" for line in format_exception(sub).splitlines())
        blocks.append(block)
        if led_on:
            blocks.append(led_on)
    return "\n\n".join(blocks)


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO-8601 UTC), ``level``, ``logger``, ``msg``, the extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)

    def formatException(self, ei: Any) -> str:
        """The traceback, a database driver's error without its message (``format_exception``)."""
        return format_exception(ei[1]) if ei[1] is not None else super().formatException(ei)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        """The traceback, a database driver's error without its message (``format_exception``)."""
        return format_exception(ei[1]) if ei[1] is not None else super().formatException(ei)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = record_extras(record)
        if not extras:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the fields
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{head} {fields}{sep}{tail}"


class DropSdkActivityFailures(logging.Filter):
    """Drops the Temporal SDK's "Completing activity as failed" record: the worker's attempt line
    (``workers.interceptors``) replaces it, with the message redacted and truncated."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "__temporal_error_identifier", None) != "ActivityFailure"


class WebSocketPathsWithoutQuery(logging.Filter):
    """uvicorn logs every WebSocket handshake (``'<peer> - "WebSocket <path>?<query>" [accepted]'``,
    ``403``, ...) on ``uvicorn.error`` whatever its access log says; the DM socket's query names the
    user (``?nickname=``). The path stays, the query goes, as in the API's own request lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name == "uvicorn.error"
            and isinstance(record.msg, str)
            and '"WebSocket %s"' in record.msg
            and isinstance(record.args, tuple)
            and len(record.args) >= 2
        ):
            path = str(record.args[1]).partition("?")[0]
            record.args = (record.args[0], path, *record.args[2:])
        return True


def log_handler(fmt: str = "json", stream: TextIO | None = None, *filters: logging.Filter) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter of ``fmt`` and the given filters."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(DropSdkActivityFailures())
    handler.addFilter(WebSocketPathsWithoutQuery())
    for log_filter in filters:
        handler.addFilter(log_filter)
    return handler


def configure_logging(settings: Settings, *filters: logging.Filter) -> logging.Handler:
    """Install the one root handler (``settings.log_format`` at ``settings.log_level``) and route
    uvicorn's and the ``warnings`` module's output through it; idempotent. Returns the handler."""
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from an earlier call, or logging.basicConfig's; test-runner capture handlers stay.
        if getattr(old, _MARK, False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    handler = log_handler(settings.log_format, None, *filters)
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # uvicorn's access lines carry the query string; the API's middleware writes one line per request
    # without it, so the access logger only passes warnings.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return handler


def temporal_core_logging(level: str = "WARN") -> LoggingConfig:
    """Temporal Core (Rust) log settings that forward its lines to the ``temporalio.core`` logger, so
    they are formatted like every other line instead of printed by Core itself."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, TelemetryFilter

    return LoggingConfig(
        filter=TelemetryFilter(core_level=level, other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


def fields(**values: Any) -> Mapping[str, Any]:
    """``extra=`` for a log call, leaving out fields whose value is ``None``."""
    return {k: v for k, v in values.items() if v is not None}
