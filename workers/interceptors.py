"""The worker's activity interceptor: one log line and one outcome count per activity attempt.

An attempt that fails with a database driver's error leaves the worker as an ``ApplicationError`` of
the same type name (so retry policies treat it as before) whose message is only the driver error's type
and code (``config.logging.safe_error_text``): a driver's message can quote the data it failed on (a
duplicate e-mail or device token, a failed write's documents), and the failure's message and cause
chain are kept in the workflow's history and reach the caller's logs.

Metrics (worker process, ``/metrics``): ``sosohappy_activity_attempts_total{activity,outcome}`` with
``outcome`` one of ``success``, ``retryable_error``, ``non_retryable_error``, ``cancelled``, and
``sosohappy_activity_duration_seconds{activity}``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from typing import Any

from prometheus_client import Counter, Histogram
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from config.logging import is_data_store_error, safe_error_text

ACTIVITY_ATTEMPTS = Counter(
    "sosohappy_activity_attempts_total",
    "Activity attempts finished by this worker, by activity type and outcome",
    ["activity", "outcome"],
)
ACTIVITY_DURATION = Histogram(
    "sosohappy_activity_duration_seconds",
    "Duration of one activity attempt, by activity type",
    ["activity"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

#: Outcomes of an attempt, as counted and logged.
SUCCESS, RETRYABLE, NON_RETRYABLE, CANCELLED = (
    "success",
    "retryable_error",
    "non_retryable_error",
    "cancelled",
)

attempt_log = logging.getLogger("workers.activity")

MAX_ERROR_CHARS = 300
MAX_FRAMES = 8
#: Credentials that could ride along in an error message (a bearer token, a JWT) are never logged.
_SECRETS = re.compile(r"(?i)bearer\s+\S+|eyJ[\w-]+\.[\w-]+\.[\w-]*")


def _outcome(exc: BaseException, info: activity.Info) -> str:
    """How Temporal treats the attempt's exception: cancelled, retried, or final."""
    if isinstance(exc, asyncio.CancelledError | CancelledError):
        return CANCELLED
    if isinstance(exc, ApplicationError):
        if exc.non_retryable:
            return NON_RETRYABLE
        error_type = exc.type or type(exc).__name__
    else:
        error_type = type(exc).__name__
    policy = info.retry_policy
    if policy is not None and error_type in (policy.non_retryable_error_types or ()):
        return NON_RETRYABLE
    return RETRYABLE


def _error_fields(exc: BaseException, outcome: str) -> dict[str, Any]:
    """Type, redacted and truncated message and, for an unexpected exception (a bug, not a typed
    ``ApplicationError``), where it was raised: the frames only, never the message again."""
    text = exc.message if isinstance(exc, FailureError) else safe_error_text(exc)
    message = _SECRETS.sub("[redacted]", text)
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + "…"
    fields: dict[str, Any] = {"error_type": type(exc).__name__, "error": message}
    if isinstance(exc, ApplicationError):
        if exc.type:
            fields["error_app_type"] = exc.type
    elif outcome != CANCELLED:
        fields["error_frames"] = "".join(traceback.format_tb(exc.__traceback__)[-MAX_FRAMES:])
    return fields


def _user_id(args: Any) -> Any:
    """The ``user_id`` of the activity's single input object, if it has one."""
    if len(args) == 1:
        return getattr(args[0], "user_id", None)
    return None


class _AttemptRecorder(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        started = time.perf_counter()
        outcome, error = SUCCESS, None
        try:
            return await self.next.execute_activity(input)
        except BaseException as exc:
            outcome, error = _outcome(exc, info), exc
            if is_data_store_error(exc):
                raise ApplicationError(safe_error_text(exc), type=type(exc).__name__) from None
            raise
        finally:
            elapsed = time.perf_counter() - started
            ACTIVITY_ATTEMPTS.labels(info.activity_type, outcome).inc()
            ACTIVITY_DURATION.labels(info.activity_type).observe(elapsed)
            line: dict[str, Any] = {
                "event": "activity_attempt",
                "activity": info.activity_type,
                "activity_id": info.activity_id,
                "attempt": info.attempt,
                "workflow_id": info.workflow_id,
                "workflow_type": info.workflow_type,
                "run_id": info.workflow_run_id,
                "task_queue": info.task_queue,
                "outcome": outcome,
                "duration_ms": round(elapsed * 1000, 2),
            }
            user_id = _user_id(input.args)
            if user_id is not None:
                line["user_id"] = user_id
            if error is not None:
                line.update(_error_fields(error, outcome))
            level = logging.INFO if outcome in (SUCCESS, CANCELLED) else logging.WARNING
            attempt_log.log(
                level, "activity %s attempt %d: %s", info.activity_type, info.attempt, outcome, extra=line
            )


class ActivityAttemptInterceptor(Interceptor):
    """Records every activity attempt of the worker it is given to (log line, counter, histogram)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _AttemptRecorder(next)
