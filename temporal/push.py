"""The inputs and outcomes of the push workflows, and the like notice as the original sent it (BACKEND_SPEC §8).

Only ids cross Temporal. A like is one ``PushDeliveryWorkflow`` carrying the like's ids (``LikeNotice``);
DMs to an offline user go to the ``DmPushWorkflow`` of their (receiver, room), carrying message and user
ids. The workflows address devices by registration id and the send activities read the token and compose
the text (current nicknames, the message preview), so neither device tokens, nicknames nor message text
enter a workflow history; outcomes list device ids.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from temporal.ids import (
    dm_push_workflow_id,
    like_push_workflow_id,
    monthly_push_workflow_id,
    reminder_push_workflow_id,
)

LIKE_TITLE = "소소해피"
#: The push workflow's type name, for starters that must not import workflows (activities).
PUSH_WORKFLOW = "PushDeliveryWorkflow"


class LikeNotice(BaseModel):
    """The like a notice is about: the send activity composes its text from these ids."""

    feed_id: int
    liker_user_id: int
    owner_user_id: int
    #: The liked entry's ``date`` (``yyyyMMddHHmmssSS``), sent as the notice's data.
    date: int


class NudgeNotice(BaseModel):
    """What a nudge is about: the reminder's day (``yyyymmdd``) or the story's month (``yyyymm``), KST;
    the send activity composes its text (the story from the receiver's entries of that month)."""

    period: int


class PushRequest(BaseModel):
    """One notification to every device of one user, identified by the business event that caused it:
    ``like`` names it by ids. ``title``, ``body`` and ``data`` are only set in pushes requested before
    notices were composed by the send activity (recorded histories, an older API during a rollout)."""

    kind: Literal["like", "dm", "reminder", "monthly"]
    workflow_id: str
    receiver_user_id: int
    like: LikeNotice | None = None
    nudge: NudgeNotice | None = None
    title: str = ""
    body: str = ""
    data: dict[str, str] = {}
    deadline_seconds: int = 24 * 3600


class PushOutcome(BaseModel):
    """What happened to each device of the receiver, by device registration id (as text; runs from
    before devices were addressed by id list their tokens)."""

    sent: list[str] = []
    removed: list[str] = []
    undelivered: list[str] = []
    #: FCM refused the message itself (INVALID_ARGUMENT not about the token): the device is kept.
    rejected: list[str] = []
    #: Not sent: by the time of the send what the push tells was no longer true (the like withdrawn,
    #: the entry deleted or private, the liker or sender gone, the messages gone, the day's entry
    #: written). The device is kept.
    skipped: list[str] = []

    @property
    def label(self) -> str:
        """A one-word summary for the ``SosoOutcome`` search attribute."""
        if not (self.sent or self.removed or self.undelivered or self.rejected or self.skipped):
            return "no-device"
        if self.rejected:
            return "rejected"  # a message FCM refuses is our bug: it shows even if another device got it
        if self.undelivered:
            return "undelivered"
        if self.skipped and not self.sent:
            return "skipped"
        if self.removed:
            return "token-removed" if not self.sent else "sent-token-removed"
        return "sent"


def like_body(liker_nickname: str, owner_nickname: str) -> str:
    """``<liker>님이 <owner>님의 행복을 응원합니다🩷`` (BACKEND_SPEC §8.1)."""
    return f"{liker_nickname}님이 {owner_nickname}님의 행복을 응원합니다\U0001fa77"


def like_push(feed_id: int, liker_user_id: int, owner_user_id: int, date: int) -> PushRequest:
    """The like notice to the owner, once per (feed, liker); its text is composed at send time."""
    return PushRequest(
        kind="like",
        workflow_id=like_push_workflow_id(feed_id, liker_user_id),
        receiver_user_id=owner_user_id,
        like=LikeNotice(feed_id=feed_id, liker_user_id=liker_user_id, owner_user_id=owner_user_id, date=date),
    )


def nudge_push(
    kind: Literal["reminder", "monthly"], user_id: int, period: int, deadline_seconds: int
) -> PushRequest:
    """The nudge of ``kind`` for ``period`` (``yyyymmdd`` for the evening reminder, ``yyyymm`` for the
    monthly story) to ``user``, once per (user, period)."""
    workflow_id = reminder_push_workflow_id if kind == "reminder" else monthly_push_workflow_id
    return PushRequest(
        kind=kind,
        workflow_id=workflow_id(user_id, period),
        receiver_user_id=user_id,
        nudge=NudgeNotice(period=period),
        deadline_seconds=deadline_seconds,
    )


class DmArrived(BaseModel):
    """Signal to a ``DmPushWorkflow``: one more stored message of its room for its (offline) receiver."""

    message_id: str


class DmPushRequest(BaseModel):
    """The ``DmPushWorkflow`` of one receiver and room; messages arrive as ``DmArrived`` signals."""

    receiver_user_id: int
    sender_user_id: int
    #: How long the workflow gathers messages before it sends one push with their count.
    window_seconds: float = 3.0
    deadline_seconds: int = 24 * 3600
    #: Pushes one run sends before it continues as new (keeps every history short).
    batches_per_run: int = 100
    #: Messages gathered by a previous run that continued as new, not yet pushed.
    carried_message_ids: list[str] = []
    #: The newest messages the previous runs took (at most ``workflows.dm_push.TAKEN_KEPT``; marker
    #: ``dm-push-signal-once``): a repeated signal of one of them is ignored after a continue-as-new too.
    taken_message_ids: list[str] = []

    @property
    def workflow_id(self) -> str:
        """``push:dm-room:<receiver id>:<low id>-<high id>``: ids only."""
        return dm_push_workflow_id(self.receiver_user_id, self.sender_user_id)


class DmPushStart(BaseModel):
    """One message handed to its room's ``DmPushWorkflow``, as the outbox keeps it when the signal-with-start
    failed: ids and timings only (the workflow's input and the signalled message)."""

    receiver_user_id: int
    sender_user_id: int
    message_id: str
    window_seconds: float
    deadline_seconds: int

    @property
    def workflow_id(self) -> str:
        """The room's workflow id (``DmPushRequest.workflow_id``)."""
        return self.request.workflow_id

    @property
    def request(self) -> DmPushRequest:
        """The workflow's input."""
        return DmPushRequest(
            receiver_user_id=self.receiver_user_id,
            sender_user_id=self.sender_user_id,
            window_seconds=self.window_seconds,
            deadline_seconds=self.deadline_seconds,
        )


class DmPushOutcome(BaseModel):
    """What a ``DmPushWorkflow`` run sent: one push per batch, and what the last batch did per device."""

    pushes: int = 0
    messages: int = 0
    last: PushOutcome = PushOutcome()
    #: Deliveries to a device still retrying an earlier batch that a later batch took over (each
    #: device delivered on its own: runs with the ``dm-push-per-device`` marker).
    superseded: int = 0
