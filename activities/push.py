"""Push activities: look up a user's devices, send to one device with firebase-admin, drop dead tokens.

``send_to_device`` classifies FCM errors: transient ones (UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED, network)
are retried by Temporal, honouring Retry-After; permanent ones (UNREGISTERED, INVALID_ARGUMENT,
SENDER_ID_MISMATCH) are non-retryable and lead the workflow to remove the token.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from firebase_admin import exceptions, messaging
from prometheus_client import Counter
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.firebase import firebase_app
from storage import devices

log = logging.getLogger(__name__)

PUSH_SENT = Counter("sosohappy_push_sent_total", "Push messages accepted by FCM", ["kind"])
PUSH_RETRIED = Counter(
    "sosohappy_push_retried_total", "Push attempts that failed transiently", ["kind", "reason"]
)
PUSH_FAILED = Counter("sosohappy_push_failed_total", "Pushes given up on a device", ["kind", "reason"])

#: ApplicationError types of permanent failures; the workflow removes the token after them.
PERMANENT = ("UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH")


class DeviceSend(BaseModel):
    """One notification to one device token."""

    kind: str
    token: str
    title: str
    body: str
    data: dict[str, str]


class FailureRecord(BaseModel):
    """A push given up on one device, for metrics and logs."""

    kind: str
    token: str
    reason: str
    workflow_id: str


#: firebase-admin error classes, most specific first: (class, FCM reason, permanent).
FCM_ERRORS: tuple[tuple[type[Exception], str, bool], ...] = (
    (messaging.UnregisteredError, "UNREGISTERED", True),
    (messaging.SenderIdMismatchError, "SENDER_ID_MISMATCH", True),
    (exceptions.InvalidArgumentError, "INVALID_ARGUMENT", True),
    (messaging.QuotaExceededError, "QUOTA_EXCEEDED", False),
    (exceptions.UnavailableError, "UNAVAILABLE", False),
    (exceptions.InternalError, "INTERNAL", False),
)


def _reason(exc: Exception) -> tuple[str, bool]:
    """``(reason, permanent)`` of a firebase-admin or transport error."""
    for cls, reason, permanent in FCM_ERRORS:
        if isinstance(exc, cls):
            return reason, permanent
    if isinstance(exc, exceptions.FirebaseError):
        return str(exc.code or "UNKNOWN").upper(), False
    return "NETWORK", False


def _retry_after(exc: Exception) -> timedelta | None:
    response = getattr(exc, "http_response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value and value.strip().isdigit():
        return timedelta(seconds=int(value.strip()))
    return None


class PushActivities:
    """Activities of ``PushDeliveryWorkflow`` over the worker's database and firebase-admin app."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="device_tokens")
    def device_tokens(self, user_id: int) -> list[str]:
        """The receiver's registered device tokens."""
        with self._deps.sessions() as session:
            return devices.tokens_for(session, user_id)

    @activity.defn(name="send_to_device")
    def send_to_device(self, req: DeviceSend) -> str:
        """Send one message; returns FCM's message name. Raises a typed ``ApplicationError`` on failure."""
        message = messaging.Message(
            token=req.token,
            notification=messaging.Notification(title=req.title, body=req.body),
            data=req.data,
        )
        try:
            name = messaging.send(message, app=firebase_app(self._deps.settings))
        except Exception as exc:  # every firebase-admin and transport error is classified below
            reason, permanent = _reason(exc)
            if permanent:
                PUSH_FAILED.labels(req.kind, reason).inc()
                raise ApplicationError(f"FCM {reason}: {exc}", type=reason, non_retryable=True) from None
            PUSH_RETRIED.labels(req.kind, reason).inc()
            raise ApplicationError(
                f"FCM {reason}: {exc}", type=reason, next_retry_delay=_retry_after(exc)
            ) from None
        PUSH_SENT.labels(req.kind).inc()
        return str(name)

    @activity.defn(name="remove_device_token")
    def remove_device_token(self, token: str) -> int:
        """Forget a token FCM called dead (idempotent)."""
        with self._deps.sessions.begin() as session:
            return devices.remove_token(session, token)

    @activity.defn(name="record_push_failure")
    def record_push_failure(self, record: FailureRecord) -> None:
        """Count and log a push given up on a device after its deadline."""
        PUSH_FAILED.labels(record.kind, record.reason).inc()
        log.warning("push %s to a device gave up: %s", record.workflow_id, record.reason)
