"""Nickname rules: 1–10 characters after trimming (the length the iOS client and the feed API accept)."""

from __future__ import annotations

MAX_NICKNAME_LENGTH = 10


class InvalidNickname(ValueError):
    """The nickname breaks the rules; the message says which."""


def normalize_nickname(raw: str | None) -> str:
    """The trimmed nickname, or ``InvalidNickname`` when it is empty, too long or contains a comma."""
    nickname = (raw or "").strip()
    if not nickname:
        raise InvalidNickname("nickname must not be empty")
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise InvalidNickname(f"nickname must be at most {MAX_NICKNAME_LENGTH} characters")
    if "," in nickname:
        # DM room ids join two nicknames with a comma.
        raise InvalidNickname("nickname must not contain a comma")
    return nickname


def visible_nickname(stored: str | None) -> str:
    """What sign-in reports: the nickname, or ``""`` while the profile is not set (routes to sign-up)."""
    if stored is None or len(stored) > MAX_NICKNAME_LENGTH:
        return ""
    return stored
