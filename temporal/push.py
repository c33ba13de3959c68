"""Push notifications as the original sent them (BACKEND_SPEC §8), and the input of ``PushDeliveryWorkflow``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from temporal.ids import dm_push_workflow_id, like_push_workflow_id

LIKE_TITLE = "소소해피"
DM_BODY_LIMIT = 30  # UTF-16 code units: shorter texts are sent whole
DM_BODY_KEEP = 25


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

    @property
    def label(self) -> str:
        """A one-word summary for the ``SosoOutcome`` search attribute."""
        if not (self.sent or self.removed or self.undelivered):
            return "no-device"
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


def dm_body(text: str) -> str:
    """The text if shorter than 30 UTF-16 code units, else its first 25 + ``...``, never splitting a
    surrogate pair or a grapheme (emoji with modifiers or joiners)."""
    if _utf16_len(text) < DM_BODY_LIMIT:
        return text
    kept, used = [], 0
    for cluster in _graphemes(text):
        size = _utf16_len(cluster)
        if used + size > DM_BODY_KEEP:
            break
        kept.append(cluster)
        used += size
    return "".join(kept) + "..."


def dm_push(message_id: str, sender: str, receiver_user_id: int, text: str, raw_frame: str) -> PushRequest:
    """The DM notice for one stored message: title = sender, body = the (shortened) text."""
    return PushRequest(
        kind="dm",
        workflow_id=dm_push_workflow_id(message_id),
        receiver_user_id=receiver_user_id,
        title=sender,
        body=dm_body(text),
        data={"messageDto": raw_frame},
    )


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


_JOINERS = {"\u200d"}


def _extends(ch: str) -> bool:
    """True for characters that belong to the previous grapheme (modifiers, selectors, joiners, marks)."""
    code = ord(ch)
    return (
        ch in _JOINERS
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (flag sequences)
        or 0x0300 <= code <= 0x036F  # combining diacritics
        or 0x20D0 <= code <= 0x20FF
    )


def _graphemes(text: str) -> list[str]:
    """A small grapheme splitter covering emoji sequences: base + modifiers, ZWJ chains, flag pairs."""
    clusters: list[str] = []
    i = 0
    while i < len(text):
        cluster = text[i]
        i += 1
        is_flag = 0x1F1E6 <= ord(cluster) <= 0x1F1FF
        if is_flag and i < len(text) and 0x1F1E6 <= ord(text[i]) <= 0x1F1FF:
            cluster += text[i]
            i += 1
        while i < len(text) and (_extends(text[i]) or cluster[-1] in _JOINERS):
            cluster += text[i]
            i += 1
        clusters.append(cluster)
    return clusters
