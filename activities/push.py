"""Push activities: look up a user's devices, send to one device with firebase-admin, drop dead tokens.

Every message is fitted within FCM's 4,096-byte limit before it is sent (``activities.fcm_message``).
FCM errors are classified: transient ones (UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED, network) are retried
by Temporal, honouring Retry-After (a QUOTA_EXCEEDED without it waits a minute at least, doubling); the token is removed only when FCM says the *token* is bad
(UNREGISTERED, SENDER_ID_MISMATCH, or INVALID_ARGUMENT whose details name the registration token); any
other INVALID_ARGUMENT (a message FCM refuses, e.g. too big) is ``INVALID_MESSAGE``: not retried, the
device is kept, and the workflow records the push as rejected.

Workflows address a device by its registration id: the send activities read the token (only while it is
still registered to the receiver) and compose the notice from ids, so neither a token nor a notice's text
is an activity input or result, and failure messages name only FCM's error code.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import NoReturn

from firebase_admin import exceptions, messaging
from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy import Connection
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from activities.fcm_message import MessageTooLarge, Notice, fitted_message
from activities.firebase import firebase_app
from activities.push_text import REMINDER_BODY, dm_burst_body, monthly_story_body
from feeds.happiness import month_story
from kst.dates import MONTH, month_range
from storage import devices, feeds, users
from temporal.ids import dm_room_key, like_collapse_id, nudge_collapse_id
from temporal.push import LIKE_TITLE, LikeNotice, NudgeNotice, like_body

log = logging.getLogger(__name__)

PUSH_SENT = Counter("sosohappy_push_sent_total", "Push messages accepted by FCM", ["kind"])
PUSH_RETRIED = Counter(
    "sosohappy_push_retried_total", "Push attempts that failed transiently", ["kind", "reason"]
)
PUSH_FAILED = Counter("sosohappy_push_failed_total", "Pushes given up on a device", ["kind", "reason"])
PUSH_SKIPPED = Counter(
    "sosohappy_push_skipped_total",
    "Pushes not sent to a device because what they tell was no longer true at send time",
    ["kind", "reason"],
)

#: ApplicationError types after which the workflow removes the token: FCM said the token is bad.
#: (``INVALID_ARGUMENT`` is raised only when FCM's answer names the registration token.)
TOKEN_DEAD = ("UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH")
#: FCM refused the message itself (any other INVALID_ARGUMENT): not retried, and the device is kept.
MESSAGE_REJECTED = "INVALID_MESSAGE"
#: The device id is no longer registered to the receiver (signed out, resigned, or its token moved to
#: another account): nothing is sent and nothing removed.
DEVICE_GONE = "DEVICE_GONE"
#: What the push tells is no longer true at send time (a like withdrawn, its entry deleted or made
#: private, the liker or the DM sender resigned, the author blocked the liker or the receiver the sender,
#: a DM batch's messages deleted, the reminder's day written): nothing is sent, the device is kept. The
#: failure's details name the reason (``LIKE_WITHDRAWN``, ``ENTRY_GONE``, ``ENTRY_PRIVATE``,
#: ``LIKER_GONE``, ``LIKER_BLOCKED``, ``SENDER_GONE``, ``SENDER_BLOCKED``, ``MESSAGES_GONE``,
#: ``ENTRY_WRITTEN``).
NO_LONGER_TRUE = "NO_LONGER_TRUE"
#: Every non-retryable ApplicationError type of the send activities.
PERMANENT = (*TOKEN_DEAD, MESSAGE_REJECTED, DEVICE_GONE, NO_LONGER_TRUE)


class DeviceSend(BaseModel):
    """One notification to one device: ``device_id`` of ``receiver_user_id`` and the ``like`` it is
    about. Sends of runs from before devices were addressed by id carry ``token`` and the composed
    ``title``/``body``/``data`` instead (pushes requested by an older API still carry the text)."""

    kind: str
    device_id: int = 0
    receiver_user_id: int = 0
    like: LikeNotice | None = None
    #: A reminder's day or a story's month (``kind`` says which).
    nudge: NudgeNotice | None = None
    token: str = ""
    title: str = ""
    body: str = ""
    data: dict[str, str] = {}


#: How many messages of a DM batch its send activity checks are still there (the newest ones).
DM_CHECKED_MESSAGES = 20


class DmDeviceSend(BaseModel):
    """One DM push to one device: the activity reads the token, the sender's nickname and the text by
    id (``token`` instead of ``device_id`` in runs from before devices were addressed by id)."""

    receiver_user_id: int
    sender_user_id: int
    #: The newest message of the batch (its text is the preview).
    message_id: str
    count: int
    #: The batch's other messages, newest last (the last ``DM_CHECKED_MESSAGES`` at most): the push is
    #: sent while any of them is left, with the newest left as the preview.
    earlier_message_ids: list[str] = []
    device_id: int = 0
    token: str = ""


class FailureRecord(BaseModel):
    """A push given up on one device, for metrics and logs (``token`` only in runs from before devices
    were addressed by id)."""

    kind: str
    reason: str
    workflow_id: str
    device_id: int = 0
    token: str = ""


#: firebase-admin error classes, most specific first: (class, FCM reason, permanent).
FCM_ERRORS: tuple[tuple[type[Exception], str, bool], ...] = (
    (messaging.UnregisteredError, "UNREGISTERED", True),
    (messaging.SenderIdMismatchError, "SENDER_ID_MISMATCH", True),
    (exceptions.InvalidArgumentError, "INVALID_ARGUMENT", True),
    (messaging.QuotaExceededError, "QUOTA_EXCEEDED", False),
    (exceptions.UnavailableError, "UNAVAILABLE", False),
    (exceptions.InternalError, "INTERNAL", False),
)


def fcm_reason(exc: Exception) -> tuple[str, bool]:
    """``(reason, permanent)`` of a firebase-admin or transport error; an INVALID_ARGUMENT that does not
    name the registration token is ``INVALID_MESSAGE``."""
    for cls, reason, permanent in FCM_ERRORS:
        if isinstance(exc, cls):
            if reason == "INVALID_ARGUMENT" and not names_the_token(exc):
                return MESSAGE_REJECTED, True
            return reason, permanent
    if isinstance(exc, exceptions.FirebaseError):
        return str(exc.code or "UNKNOWN").upper(), False
    return "NETWORK", False


def names_the_token(exc: Exception) -> bool:
    """True when FCM's INVALID_ARGUMENT answer is about the registration token: a ``BadRequest`` field
    violation on ``message.token``, or FCM's message naming the registration token ("The registration
    token is not a valid FCM registration token")."""
    response = getattr(exc, "http_response", None)
    try:
        error = response.json().get("error", {}) if response is not None else {}
    except ValueError:
        return False
    if not isinstance(error, dict):
        return False
    for detail in error.get("details") or []:
        violations = detail.get("fieldViolations") if isinstance(detail, dict) else None
        for violation in violations or []:
            if isinstance(violation, dict) and violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()


#: FCM's rule for QUOTA_EXCEEDED (message rate exceeded) without Retry-After: back off exponentially
#: from at least one minute (https://firebase.google.com/docs/cloud-messaging/http-server-ref, 429), up
#: to the send retry policy's 10-minute ceiling.
QUOTA_BACKOFF = timedelta(minutes=1)
QUOTA_BACKOFF_MAX = timedelta(minutes=10)


def _retry_after(exc: Exception) -> timedelta | None:
    """FCM's ``Retry-After``: seconds, or an HTTP date (RFC 9110 allows both); ``None`` without one, or
    for a date already past."""
    response = getattr(exc, "http_response", None)
    value = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    wait = when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)
    return timedelta(seconds=math.ceil(wait.total_seconds())) if wait > timedelta(0) else None


def retry_delay(reason: str, exc: Exception, attempt: int) -> timedelta | None:
    """How long to wait before the next attempt after a transient ``reason`` on attempt ``attempt``
    (from 1): FCM's Retry-After when it gave one; after a QUOTA_EXCEEDED without it, one minute doubled
    per attempt up to ten; otherwise ``None`` (the retry policy's backoff, from 1 s)."""
    after = _retry_after(exc)
    if after is not None:
        return after
    if reason == "QUOTA_EXCEEDED":
        return min(QUOTA_BACKOFF * 2 ** max(attempt - 1, 0), QUOTA_BACKOFF_MAX)
    return None


class PushActivities:
    """Activities of ``PushDeliveryWorkflow`` over the worker's database and firebase-admin app."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="device_tokens")
    def device_tokens(self, user_id: int) -> list[str]:
        """The receiver's registered device tokens (runs from before devices were addressed by id)."""
        with self._deps.sessions() as session:
            return devices.tokens_for(session, user_id)

    @activity.defn(name="device_ids")
    def device_ids(self, user_id: int) -> list[int]:
        """The registration ids of the receiver's devices."""
        with self._deps.engine.connect() as conn:  # a Core read: no ORM session for one column
            return devices.ids_for(conn, user_id)

    @activity.defn(name="send_to_device")
    def send_to_device(self, req: DeviceSend) -> str:
        """Send one notice (fitted to FCM's limit): a like's is composed here from its ids (title
        ``소소해피``, body with the liker's and owner's current nicknames, data the entry's date); a push
        requested with its text is sent as given. A like's or nudge's notice carries a collapse id of
        its business key (``like-<feed>-<liker>``, ``reminder-<day>``, ``monthly-<yyyymm>``), so a
        notice sent twice (at-least-once) shows once. Returns FCM's message name; raises a typed
        ``ApplicationError`` on failure."""
        if req.like is not None:
            like = req.like
            with self._deps.engine.connect() as conn:  # the token, then the like as it is now
                token = self._token(req, conn)
                state = feeds.like_state(conn, like.feed_id, like.liker_user_id, like.owner_user_id)
            if state is None:
                self._no_longer_true(req.kind, "ENTRY_GONE", "the liked entry was deleted")
            if state.liker_nickname is None:
                self._no_longer_true(req.kind, "LIKER_GONE", "the liker resigned")
            if not state.liked:
                self._no_longer_true(req.kind, "LIKE_WITHDRAWN", "the like was withdrawn")
            if not state.is_public:
                self._no_longer_true(req.kind, "ENTRY_PRIVATE", "the liked entry is no longer public")
            if state.liker_blocked:  # blocked after the like, while its push was pending or retrying
                self._no_longer_true(req.kind, "LIKER_BLOCKED", "the author blocked the liker")
            notice = Notice(
                title=LIKE_TITLE,
                body=like_body(state.liker_nickname, state.owner_nickname or ""),
                data={"date": str(like.date)},
                replace_id=like_collapse_id(like.feed_id, like.liker_user_id),
            )
        else:
            with self._deps.engine.connect() as conn:
                token = self._token(req, conn)
                if req.nudge is not None:
                    notice = self._nudge_notice(conn, req.kind, req.receiver_user_id, req.nudge)
                else:
                    notice = Notice(title=req.title, body=req.body, data=req.data)
        return self._send(req.kind, token, notice)

    @activity.defn(name="send_dm_to_device")
    def send_dm_to_device(self, req: DmDeviceSend) -> str:
        """Send the DM notice of a batch of ``count`` messages of one room, composed here from ids:
        title = the sender's current nickname, body = the newest message's preview (with the count
        when more than one), data = ids only; one collapse key per room. Not sent (``NO_LONGER_TRUE``)
        when the sender resigned, the receiver has blocked the sender or none of the batch's messages is
        left. Returns FCM's message name."""
        with self._deps.engine.connect() as conn:  # the token, the sender and the block on one connection
            token = self._token(req, conn)
            sender = users.active_nickname(conn, req.sender_user_id)
            blocked = users.is_blocked(conn, req.receiver_user_id, req.sender_user_id)
        if sender is None:
            self._no_longer_true("dm", "SENDER_GONE", "the sender resigned")
        if blocked:  # blocked after the messages were stored (a block before refuses them outright)
            self._no_longer_true("dm", "SENDER_BLOCKED", "the receiver blocked the sender")
        latest = self._deps.messages.newest_of([*req.earlier_message_ids, req.message_id])
        if latest is None:
            self._no_longer_true("dm", "MESSAGES_GONE", "the messages were deleted")
        notice = Notice(
            title=sender,
            body=dm_burst_body(req.count, latest.text),
            data={
                "kind": "dm",
                "messageId": latest.id,
                "senderId": str(req.sender_user_id),
                "count": str(req.count),
            },
            collapse_key=f"dm-{dm_room_key(req.sender_user_id, req.receiver_user_id)}",
        )
        return self._send("dm", token, notice)

    def _nudge_notice(self, conn: Connection, kind: str, user_id: int, nudge: NudgeNotice) -> Notice:
        """Title ``소소해피``; a reminder's fixed body, or the story of the month composed from the
        receiver's entries by the charts' rules; data the period only."""
        replace_id = nudge_collapse_id(kind, nudge.period)
        if kind == "reminder" and feeds.has_entry_on(conn, user_id, nudge.period):
            self._no_longer_true(kind, "ENTRY_WRITTEN", "the day's entry was written")
        if kind != "monthly":
            data = {"kind": kind, "day": str(nudge.period)}
            return Notice(title=LIKE_TITLE, body=REMINDER_BODY, data=data, replace_id=replace_id)
        start, end = month_range(nudge.period * MONTH)
        entries = feeds.entries_between(conn, user_id, start, end)
        body = monthly_story_body(nudge.period, month_story(start, entries))
        data = {"kind": kind, "month": str(nudge.period)}
        return Notice(title=LIKE_TITLE, body=body, data=data, replace_id=replace_id)

    @staticmethod
    def _no_longer_true(kind: str, reason: str, why: str) -> NoReturn:
        """Settle the device as skipped: what the push tells is no longer true (``reason``, counted)."""
        PUSH_SKIPPED.labels(kind, reason).inc()
        raise ApplicationError(f"not sent: {why}", reason, type=NO_LONGER_TRUE, non_retryable=True)

    def _token(self, req: DeviceSend | DmDeviceSend, conn: Connection) -> str:
        """The token of ``req``'s device while it is registered to the receiver, else ``DEVICE_GONE``
        (or the token ``req`` carries, in runs from before devices were addressed by id)."""
        if not req.device_id:
            return req.token
        token = devices.token_of(conn, req.device_id, req.receiver_user_id)
        if token is None:
            raise ApplicationError(
                "the device is no longer registered to the receiver", type=DEVICE_GONE, non_retryable=True
            )
        return token

    def _send(self, kind: str, token: str, notice: Notice) -> str:
        """Send to FCM. Failure messages name FCM's error code only (no token, no text: they are kept
        in the workflow history)."""
        try:
            message = fitted_message(token, notice)
        except MessageTooLarge as exc:
            PUSH_FAILED.labels(kind, MESSAGE_REJECTED).inc()
            raise ApplicationError(str(exc), type=MESSAGE_REJECTED, non_retryable=True) from None
        try:
            name = messaging.send(message, app=firebase_app(self._deps.settings))
        except Exception as exc:  # every firebase-admin and transport error is classified below
            reason, permanent = fcm_reason(exc)
            log.info("FCM %s on a %s push (%s)", reason, kind, type(exc).__name__)
            if permanent:
                PUSH_FAILED.labels(kind, reason).inc()
                raise ApplicationError(f"FCM {reason}", type=reason, non_retryable=True) from None
            PUSH_RETRIED.labels(kind, reason).inc()
            attempt = activity.info().attempt if activity.in_activity() else 1
            delay = retry_delay(reason, exc, attempt)
            raise ApplicationError(f"FCM {reason}", type=reason, next_retry_delay=delay) from None
        PUSH_SENT.labels(kind).inc()
        return str(name)

    @activity.defn(name="remove_device_token")
    def remove_device_token(self, token: str) -> int:
        """Forget a token FCM called dead (idempotent; runs from before devices were addressed by id)."""
        with self._deps.sessions.begin() as session:
            return devices.remove_token(session, token)

    @activity.defn(name="remove_device")
    def remove_device(self, device_id: int) -> int:
        """Forget a device whose token FCM called dead (idempotent)."""
        with self._deps.sessions.begin() as session:
            return devices.remove_device(session, device_id)

    @activity.defn(name="record_push_failure")
    def record_push_failure(self, record: FailureRecord) -> None:
        """Count and log a push given up on a device after its deadline."""
        PUSH_FAILED.labels(record.kind, record.reason).inc()
        log.warning("push %s to a device gave up: %s", record.workflow_id, record.reason)
