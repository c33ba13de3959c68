"""The frames of the DM socket as the original server took them: ``{"sender","receiver","date","text"}``
in, the stored ``MessageDto`` out, and an error frame for a refused one (the socket stays open)."""

from __future__ import annotations

import json
import unicodedata

from pydantic import BaseModel, Field

from accounts.nicknames import InvalidNickname, nickname_key, normalize_nickname
from freetext import refused_character
from kst.dates import InvalidDate, check_date, now_kst

MAX_TEXT = 2000
#: Characters that show nothing on their own, besides whitespace and the invisible format characters
#: free text keeps (zero-width space and joiners, word joiner, direction marks: category Cf): the
#: Hangul fillers, the blank braille pattern, the combining grapheme joiner and the variation selectors.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f") | frozenset(map(chr, range(0xFE00, 0xFE10)))


def _blank(char: str) -> bool:
    """Whether ``char`` shows nothing on its own."""
    return (
        char.isspace()
        or char in _BLANK
        or unicodedata.category(char) == "Cf"
        or 0xE0100 <= ord(char) <= 0xE01EF
    )


class FrameRefused(Exception):
    """A frame that cannot be sent; the reason goes back to the sender in an error frame."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


def parse_frame(raw: str, sender: str) -> tuple[str, int, str]:
    """``(receiver, date, text)`` of a ``{"sender","receiver","date","text"}`` frame sent by ``sender``
    (the caller's stored nickname); both names are read as canonical nicknames, so the receiver is the
    key it is stored under, and a missing ``date`` is now (16-digit KST)."""
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser's stack
        raise FrameRefused("the frame is not JSON", "malformed") from None
    if not isinstance(frame, dict):
        raise FrameRefused("the frame must be a JSON object", "malformed")
    claimed, named = frame.get("sender"), frame.get("receiver")
    if not isinstance(claimed, str) or nickname_key(claimed) != sender:
        raise FrameRefused("sender must be your own nickname", "sender")
    text, date = frame.get("text"), frame.get("date")
    if not isinstance(named, str) or not named.strip():
        raise FrameRefused("receiver is required", "receiver")
    try:
        receiver = normalize_nickname(named)
    except InvalidNickname as exc:
        raise FrameRefused(exc.for_field("receiver"), "receiver") from None
    if receiver == sender:
        raise FrameRefused("you cannot message yourself", "receiver")
    if not isinstance(text, str) or not text:
        raise FrameRefused("text must be a non-empty string", "text")
    if all(map(_blank, text)):  # a message the receiver would see as empty
        raise FrameRefused("text must show something: not only blank or invisible characters", "text")
    if len(text) > MAX_TEXT:
        raise FrameRefused(f"text must be at most {MAX_TEXT} characters", "text")
    refused = refused_character(text)  # e.g. a lone surrogate ("\ud800"): valid JSON, no UTF-8 to store
    if refused is not None:
        raise FrameRefused(f"text {refused}", "text")
    if date is None:
        return receiver, now_kst(), text
    if not isinstance(date, int) or isinstance(date, bool):
        raise FrameRefused("date must be a 16-digit integer yyyyMMddHHmmssSS", "date")
    try:
        return receiver, check_date(date), text
    except InvalidDate as exc:
        raise FrameRefused(f"date {exc}", "date") from None


def error_frame(reason: str, raw: str) -> str:
    """What the sender gets back for a refused frame (the socket stays open)."""
    return json.dumps({"error": reason, "frame": raw[:200]}, ensure_ascii=False)


# -- the frames as models: what the AsyncAPI document (``api.asyncapi``) describes -------------------


class SendFrame(BaseModel):
    """A frame a client sends: a message to ``receiver`` (``parse_frame`` applies these rules)."""

    sender: str = Field(description="the sender's own nickname")
    receiver: str = Field(description="the receiver's nickname (not the sender's)")
    date: int | None = Field(
        None, description="16-digit KST timestamp yyyyMMddHHmmssSS; absent: now", examples=[2024012017042712]
    )
    text: str = Field(
        min_length=1, max_length=MAX_TEXT, description="not only whitespace or invisible characters"
    )


class ErrorFrame(BaseModel):
    """What the sender gets back for a refused frame (``error_frame``); the socket stays open."""

    error: str = Field(description="why the frame was refused")
    frame: str = Field(max_length=200, description="the start of the refused frame (or its text)")
