"""Nickname rules: the one canonical form of a nickname, used as the key everywhere.

A nickname is NFC-normalised and trimmed, then must be 1–10 characters (code points after NFC, so a
composed Korean syllable counts once: the length the iOS client and the feed API accept) without a comma,
invisible or line-breaking characters, spaces other than single plain ones, or code points that have no
meaning yet (unassigned) or any a font likes (private use). Every entry point (setProfile, each parameter that
names a user, DM frames) passes what it received through ``normalize_nickname``, so ``"alice"``,
``" alice "`` and a decomposed ``"alice"`` are one key and never two users.

Look-ups stay exact on that canonical form. Claiming a nickname (setProfile, checkDuplicateNickname)
also compares its two look-alike keys, ``nickname_skeletons``: ``alice``, ``Alice``, fullwidth
``ａｌｉｃｅ``, ``аlice`` with a Cyrillic ``а``, ``НANA`` with a Cyrillic ``Н`` for ``HANA`` and ``Iily``
for ``lily`` share a key with the other, so they are one user.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

from accounts.confusable_prototypes import PROTOTYPES

MAX_NICKNAME_LENGTH = 10
#: Longer raw values are refused before normalising: no nickname needs more, in any normal form with
#: any padding, and it keeps junk parameters from being normalised at all.
MAX_RAW_NICKNAME_LENGTH = 100
#: Control (Cc), format (Cf: zero-width characters, bidi marks and isolates, soft hyphen, BOM), lone
#: surrogates (Cs: cannot be stored as UTF-8) and line or paragraph separators (Zl, Zp).
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
#: Space separators (Zs) inside a nickname, but for a single plain space (kept, although the client
#: removes spaces itself): a thin or hair space, or a second space, hides in a look-alike (``a\u200ab``
#: and ``a  b`` read as ``ab`` and ``a b``, but their keys differ).
SPACE_CATEGORY = "Zs"
#: Private use (Co: iOS draws U+F8FF as the Apple logo, another font anything) and unassigned (Cn: no
#: look-alike data, and its future glyph unknown) code points.
MEANINGLESS_CATEGORIES = frozenset({"Co", "Cn"})
#: Characters that render as nothing: the Hangul fillers, letters (Lo) and the usual way to make a
#: "blank" or look-alike Korean nickname (no composed syllable contains one), the Braille blank and the
#: musical null notehead (symbols, So).
INVISIBLE_LETTERS = frozenset({"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\U0001d159"})
#: Default-ignorable marks a valid nickname may hold (the other default ignorables are format characters
#: or fillers, refused above): combining grapheme joiner, Mongolian and standard variation selectors.
#: They change nothing visible, so the skeleton drops them (UTS #39 does the same).
IGNORED_IN_SKELETON = frozenset(
    chr(code) for code in (0x034F, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0))
)
#: Precomposed Hangul syllables (가 … 힣): each is its own skeleton, never split into jamo.
HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)


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
    control, format, separator, blank, private-use or unassigned character; ``InvalidNickname``
    otherwise. Idempotent: a canonical nickname is returned unchanged."""
    if raw is not None and len(raw) > MAX_RAW_NICKNAME_LENGTH:
        raise InvalidNickname(f"must be at most {MAX_NICKNAME_LENGTH} characters")
    nickname = unicodedata.normalize("NFC", raw or "").strip()
    if not nickname:
        raise InvalidNickname("must not be empty")
    for char in nickname:
        reason = _refused(char)
        if reason is not None:
            raise InvalidNickname(f"must not contain {reason} (U+{ord(char):04X})")
    if "  " in nickname:
        raise InvalidNickname("must not contain two spaces in a row")
    if len(nickname) > MAX_NICKNAME_LENGTH:
        raise InvalidNickname(f"must be at most {MAX_NICKNAME_LENGTH} characters")
    if "," in nickname:
        # DM room ids join two nicknames with a comma.
        raise InvalidNickname("must not contain a comma")
    return nickname


def _refused(char: str) -> str | None:
    """What kind of character ``char`` is if no nickname may hold it, else ``None``."""
    category = unicodedata.category(char)
    if category in REFUSED_CATEGORIES or char in INVISIBLE_LETTERS:
        return "control, format or invisible characters"
    if category == SPACE_CATEGORY and char != " ":
        return "spaces other than the plain space"
    if category in MEANINGLESS_CATEGORIES:
        return "unassigned or private-use characters"
    return None


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


def _folded(text: str) -> str:
    """NFKC, case folded, NFKC again (the usual NFKC_Casefold): compatibility forms and case go."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def _prototypes(text: str) -> str:
    """One UTS #39 skeleton pass over ``text``: each character decomposed (NFD), default ignorables
    dropped, each code point replaced by its confusable prototype. Hangul syllables are kept whole."""
    out: list[str] = []
    for char in text:
        if ord(char) in HANGUL_SYLLABLES:
            out.append(char)
            continue
        for code_point in unicodedata.normalize("NFD", char):
            if code_point not in IGNORED_IN_SKELETON:
                out.append(PROTOTYPES.get(code_point, code_point))
    return "".join(out)


#: Folding a prototype can yield a character with a prototype of its own (``0`` → ``O`` → ``o``); two
#: passes settle every character of the table, the bound only guards against a future table that loops.
MAX_SKELETON_PASSES = 4
#: No character's skeleton is longer (U+FDFA, an Arabic ligature of 18 letters): a nickname's keys are
#: at most this many times its length.
MAX_SKELETON_GROWTH = 18


class NicknameSkeletons(NamedTuple):
    """The two look-alike keys of a nickname: two nicknames that share either look alike."""

    #: Case folded first, then the confusable prototypes: ``Alice``, ``ALICE`` and ``аlice`` (Cyrillic
    #: ``а``) are ``alice``. Blind to capitals that look like another letter than their small form
    #: (Cyrillic ``Н`` folds to ``н``, which looks like a small-capital ``ʜ``, not ``h``).
    folded: str
    #: The confusable prototypes of the letters as written, then case folded: Cyrillic ``НАNА`` and
    #: ``HANA`` are ``hana``, and a capital ``I`` is an ``l`` (``Iily`` is ``lily``). Blind to case
    #: pairs whose two forms look different (``Ivan`` is ``lvan`` but ``ivan`` is ``ivan``).
    cased: str


def _settled(skeleton: str) -> str:
    """Prototype and fold ``skeleton`` until nothing changes (at most ``MAX_SKELETON_PASSES`` times)."""
    for _ in range(MAX_SKELETON_PASSES):
        again = _folded(_prototypes(skeleton))
        if again == skeleton:
            break
        skeleton = again
    return skeleton


def nickname_skeletons(nickname: str) -> NicknameSkeletons:
    """The look-alike keys of the canonical ``nickname``; only one user may hold each.

    Both are NFKC (fullwidth ``ａｌｉｃｅ``, mathematical letters, ligatures are plain letters), the UTS #39
    confusable prototypes (NFD, default ignorables dropped, each code point replaced: Cyrillic ``а``,
    Greek ``ο``, ``rn`` for ``m``, and the digits ``0`` and ``1`` read as ``o`` and ``l``, as UTS #39 has
    them) and case folding, repeated until nothing changes; they differ in whether case is folded
    before the prototypes or after (``NicknameSkeletons``). Hangul syllables are their own skeleton, so
    a Korean nickname made of syllables is both its keys and never collides with another. Each key is
    idempotent and at most ``MAX_SKELETON_GROWTH`` times as long as the nickname."""
    return NicknameSkeletons(
        folded=_settled(_folded(nickname)), cased=_settled(unicodedata.normalize("NFKC", nickname))
    )
