"""Process logging: one JSON object per line on stderr (or readable text), uvicorn's loggers included.

Every process calls ``configure_logging(settings)`` once at start-up. Structured fields are passed as
``extra={...}`` and become top-level keys of the line; filters given to ``configure_logging`` (the API's
request context) add fields to every record.
"""

from __future__ import annotations

import json
import logging
import sys
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


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

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


def log_handler(fmt: str = "json", stream: TextIO | None = None, *filters: logging.Filter) -> logging.Handler:
    """A stream handler (stderr by default) with the formatter of ``fmt`` and the given filters."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(DropSdkActivityFailures())
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
