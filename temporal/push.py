"""The inputs and outcomes of the push workflows, and the like notice as the original sent it (BACKEND_SPEC §8).

A like is one ``PushDeliveryWorkflow`` (its notice composed by the API). DMs to an offline user go to the
``DmPushWorkflow`` of their (receiver, room): it carries only ids (message ids, user ids) and its send
activity composes the text, so no message text enters a workflow history.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from temporal.ids import dm_push_workflow_id, like_push_workflow_id

LIKE_TITLE = "소소해피"


class PushRequest(BaseModel):
    """One notification to every device of one user, identified by the business event that caused it."""

    kind: Literal["like", "dm"]
    workflow_id: str
    receiver_user_id: int
    title: str
    body: str
    data: dict[str, str]
    deadline_seconds: int = 24 * 3600


class PushOutcome(BaseModel):
    """What happened to each device of the receiver."""

    sent: list[str] = []
    removed: list[str] = []
    undelivered: list[str] = []
    #: FCM refused the message itself (INVALID_ARGUMENT not about the token): the device is kept.
    rejected: list[str] = []

    @property
    def label(self) -> str:
        """A one-word summary for the ``SosoOutcome`` search attribute."""
        if not (self.sent or self.removed or self.undelivered or self.rejected):
            return "no-device"
        if self.rejected:
            return "rejected"  # a message FCM refuses is our bug: it shows even if another device got it
        if self.undelivered:
            return "undelivered"
        if self.removed:
            return "token-removed" if not self.sent else "sent-token-removed"
        return "sent"


def like_push(
    feed_id: int, liker_user_id: int, liker_nickname: str, owner_user_id: int, owner_nickname: str, date: int
) -> PushRequest:
    """``<liker>님이 <owner>님의 행복을 응원합니다🩷``, once per (feed, liker)."""
    return PushRequest(
        kind="like",
        workflow_id=like_push_workflow_id(feed_id, liker_user_id),
        receiver_user_id=owner_user_id,
        title=LIKE_TITLE,
        body=f"{liker_nickname}님이 {owner_nickname}님의 행복을 응원합니다\U0001fa77",
        data={"date": str(date)},
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

    @property
    def workflow_id(self) -> str:
        """``push:dm-room:<receiver id>:<low id>-<high id>``: ids only."""
        return dm_push_workflow_id(self.receiver_user_id, self.sender_user_id)


class DmPushOutcome(BaseModel):
    """What a ``DmPushWorkflow`` run sent: one push per batch, and what the last batch did per device."""

    pushes: int = 0
    messages: int = 0
    last: PushOutcome = PushOutcome()
