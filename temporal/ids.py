"""Workflow IDs derived from business keys, so a repeated trigger can never start a second copy."""

from __future__ import annotations

import hashlib


def sign_in_workflow_id(authorize_code: str) -> str:
    """One sign-in per single-use authorize code, named by a hash: the code itself must not reach
    workflow ids (logs, the Web UI, the CLI). 128 bits of SHA-256 keep ids unique."""
    return f"sign-in:{hashlib.sha256(authorize_code.encode()).hexdigest()[:32]}"


def resign_workflow_id(user_id: int) -> str:
    """At most one resign per account."""
    return f"resign:{user_id}"


def nickname_change_workflow_id(user_id: int) -> str:
    """One nickname-change workflow per user: two changes for one user never interleave."""
    return f"nickname-change:{user_id}"


def like_push_workflow_id(feed_id: int, liker_user_id: int) -> str:
    """The like notice for ``liker`` on ``feed`` is sent at most once."""
    return f"push:like:{feed_id}:{liker_user_id}"


def reminder_push_workflow_id(user_id: int, day: int) -> str:
    """The evening reminder of ``day`` (``yyyymmdd``, KST) reaches ``user`` at most once."""
    return f"push:reminder:{user_id}:{day}"


def monthly_push_workflow_id(user_id: int, month: int) -> str:
    """The story of ``month`` (``yyyymm``, KST) reaches ``user`` at most once."""
    return f"push:monthly:{user_id}:{month}"


def dm_room_key(a_user_id: int, b_user_id: int) -> str:
    """The DM room of two users, ``<low id>-<high id>`` (as ``dm_rooms`` keys it)."""
    low, high = sorted((a_user_id, b_user_id))
    return f"{low}-{high}"


def dm_push_workflow_id(receiver_user_id: int, sender_user_id: int) -> str:
    """One DM push workflow at a time per (receiver, room): the messages of a burst share one push.

    (Pushes of DMs started before this scheme used ``push:dm:<message id>``.)
    """
    return f"push:dm-room:{receiver_user_id}:{dm_room_key(receiver_user_id, sender_user_id)}"


def like_collapse_id(feed_id: int, liker_user_id: int) -> str:
    """The collapse id of the like notice for ``liker`` on ``feed`` (``apns-collapse-id``, Android
    ``tag``): a notice sent twice replaces itself on the device. Ids only, within APNs' 64 bytes."""
    return f"like-{feed_id}-{liker_user_id}"


def nudge_collapse_id(kind: str, period: int) -> str:
    """The collapse id of a nudge: ``reminder-<yyyymmdd>`` or ``monthly-<yyyymm>``."""
    return f"{kind}-{period}"
