"""Nickname rules: the one canonical form of a nickname, used as the key everywhere.

A nickname is NFC-normalised and trimmed, then must be 1–10 characters (code points after NFC, so a
composed Korean syllable counts once: the length the iOS client and the feed API accept) without a comma
and without invisible or line-breaking characters. Every entry point (setProfile, each parameter that
names a user, DM frames) passes what it received through ``normalize_nickname``, so ``"alice"``,
``" alice "`` and a decomposed ``"alice"`` are one key and never two users.
"""

from __future__ import annotations

import unicodedata

MAX_NICKNAME_LENGTH = 10
#: Longer raw values are refused before normalising: no nickname needs more, in any normal form with
#: any padding, and it keeps junk parameters from being normalised at all.
MAX_RAW_NICKNAME_LENGTH = 100
#: Control (Cc), format (Cf: zero-width characters, bidi marks and isolates, soft hyphen, BOM), lone
#: surrogates (Cs: cannot be stored as UTF-8) and line or paragraph separators (Zl, Zp).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Hangul fillers are letters (Lo) that render as nothing: the usual way to make a "blank" or look-alike
#: Korean nickname. No composed syllable contains one.
INVISIBLE_LETTERS = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0"})


class InvalidNickname(ValueError):
    """The value is not a valid nickname; ``reason`` says why without naming the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"nickname {reason}")
        self.reason = reason

    def for_field(self, field: str) -> str:
        """The refusal as a message about the parameter ``field`` (``"dstNickname must not …"``)."""
        return f"{field} {self.reason}"


def normalize_nickname(raw: str | None) -> str:
    """The canonical nickname: ``raw`` in NFC, trimmed of whitespace, 1–10 characters, no comma, no
    control, format, separator or filler character; ``InvalidNickname`` otherwise. Idempotent: a
    canonical nickname is returned unchanged."""
    if raw is not None and len(raw) > MAX_RAW_NICKNAME_LENGTH:
        raise InvalidNickname(f"must be at most {MAX_NICKNAME_LENGTH} characters")
    nickname = unicodedata.normalize("NFC", raw or "").strip()
    if not nickname:
        raise InvalidNickname("must not be empty")
    for char in nickname:
        if unicodedata.category(char) in REFUSED_CATEGORIES or char in INVISIBLE_LETTERS:
            raise InvalidNickname(
                f"must not contain control, format or invisible characters (U+{ord(char):04X})"
            )
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise InvalidNickname(f"must be at most {MAX_NICKNAME_LENGTH} characters")
    if "," in nickname:
        # DM room ids join two nicknames with a comma.
        raise InvalidNickname("must not contain a comma")
    return nickname


def nickname_key(raw: str | None) -> str | None:
    """The canonical nickname of ``raw``, or ``None`` when it is not a valid nickname (it names nobody)."""
    try:
        return normalize_nickname(raw)
    except InvalidNickname:
        return None


def visible_nickname(stored: str | None) -> str:
    """What sign-in reports: the nickname, or ``""`` (routes the app to sign-up, where the user picks a
    new one) while the profile is not set or when the stored value is not canonical under today's rules:
    the UUID placeholder, or a row the 0007 migration could not normalise."""
    return stored if stored is not None and nickname_key(stored) == stored else ""
