"""FCM messages that FCM accepts: one notification for one device, within FCM's 4,096-byte payload limit.

FCM refuses a message whose payload is over 4,096 bytes with ``INVALID_ARGUMENT`` (the notification and
the data together, keys and values). We measure more than FCM counts, the whole encoded message without
its target token (notification, data, APNs and Android options, compact JSON in UTF-8), so a message
that fits here fits FCM however it splits the count. A message over the limit is shortened, in order:
the body (at a grapheme boundary, with ``...``), then data entries (largest first: data carries ids,
which the client does not need to show the notice), then the title.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from firebase_admin import messaging

from activities.push_text import ELLIPSIS, graphemes

#: FCM's limit for a message to a registration token.
FCM_MAX_PAYLOAD_BYTES = 4096


@dataclass(frozen=True)
class Notice:
    """What one device is told: the visible title and body, string data, and a collapse key."""

    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)
    #: A DM room: its notices replace each other on the device, are grouped as one thread on iOS, and
    #: FCM keeps only the newest for a device that is offline.
    collapse_key: str | None = None
    #: One business event (a like, a day's reminder, a month's story): its notices replace each other
    #: on the device, so a push sent twice (at-least-once delivery) shows once. Not an FCM collapse
    #: key: FCM keeps at most four of those per offline device, and each event has its own.
    replace_id: str | None = None


class MessageTooLarge(ValueError):
    """Even an empty body, no data and an empty title are over the limit (cannot happen for our notices)."""


def build_message(token: str, notice: Notice) -> messaging.Message:
    """The firebase-admin message for ``notice``; a collapse key becomes the APNs ``apns-collapse-id``
    header and ``thread-id``, and the Android ``collapse_key`` and notification ``tag``; a replace id
    (without a collapse key) the ``apns-collapse-id`` header and the Android notification ``tag``."""
    apns = android = None
    if notice.collapse_key is not None:
        apns = messaging.APNSConfig(
            headers={"apns-collapse-id": notice.collapse_key},
            payload=messaging.APNSPayload(aps=messaging.Aps(thread_id=notice.collapse_key)),
        )
        android = messaging.AndroidConfig(
            collapse_key=notice.collapse_key,
            notification=messaging.AndroidNotification(tag=notice.collapse_key),
        )
    elif notice.replace_id is not None:
        apns = messaging.APNSConfig(headers={"apns-collapse-id": notice.replace_id})
        android = messaging.AndroidConfig(notification=messaging.AndroidNotification(tag=notice.replace_id))
    return messaging.Message(
        token=token,
        notification=messaging.Notification(title=notice.title, body=notice.body),
        data=dict(notice.data),
        apns=apns,
        android=android,
    )


def payload_bytes(message: messaging.Message) -> int:
    """Bytes of the encoded message without its target: what FCM counts against its limit, and more."""
    encoded = dict(messaging._MessagingService.encode_message(message))
    encoded.pop("token", None)
    return len(json.dumps(encoded, ensure_ascii=False, separators=(",", ":")).encode())


def fitted_message(token: str, notice: Notice, limit: int = FCM_MAX_PAYLOAD_BYTES) -> messaging.Message:
    """``build_message(token, notice)`` shortened until ``payload_bytes`` is at most ``limit``."""
    message = build_message(token, notice)
    if payload_bytes(message) <= limit:
        return message

    def fits(candidate: Notice) -> bool:
        return payload_bytes(build_message(token, candidate)) <= limit

    shorter = _shorten(notice, "body", fits)
    if shorter is not None:
        return build_message(token, shorter)
    data = dict(notice.data)
    while data:
        del data[max(data, key=lambda k: len(k.encode()) + len(data[k].encode()))]
        shorter = _shorten(replace(notice, data=dict(data)), "body", fits)
        if shorter is not None:
            return build_message(token, shorter)
    shorter = _shorten(replace(notice, data={}, body=""), "title", fits)
    if shorter is None:
        raise MessageTooLarge(f"no shortening of the notice fits {limit} bytes")
    return build_message(token, shorter)


def _shorten(notice: Notice, part: str, fits: Callable[[Notice], bool]) -> Notice | None:
    """``notice`` with ``part`` (body or title) cut to the most grapheme clusters that fit, or ``None``
    if not even an empty ``part`` fits."""
    text: str = getattr(notice, part)
    if fits(notice):
        return notice
    clusters = graphemes(text)

    def cut(keep: int) -> Notice:
        shortened = "".join(clusters[:keep]) + ELLIPSIS if keep else ""
        return replace(notice, body=shortened) if part == "body" else replace(notice, title=shortened)

    if not fits(cut(0)):
        return None
    low, high = 0, len(clusters) - 1  # cut(low) fits; the whole text does not
    while low < high:
        mid = (low + high + 1) // 2
        if fits(cut(mid)):
            low = mid
        else:
            high = mid - 1
    return cut(low)
