"""The words of a notification: DM previews and burst counts, cut only between user-perceived characters.

Text is cut at extended grapheme cluster boundaries (Unicode UAX #29), so a Korean syllable written
with conjoining jamo, an emoji with a skin tone, a ZWJ family or a flag is kept whole or left out whole.
The standard library has no grapheme segmentation and no grapheme package is pinned, so the rules are
implemented here over ``unicodedata`` categories and the code-point ranges the rules name; where a
property is not available (Extended_Pictographic) the approximation joins more, never less: a cut may
drop one character too many, it never splits one.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

from feeds.happiness import CATEGORY_NAMES, MonthStory

DM_BODY_LIMIT = 30  # UTF-16 code units: shorter texts are sent whole (BACKEND_SPEC §8.2)
DM_BODY_KEEP = 25
ELLIPSIS = "..."

_ZWJ = "\u200d"
_CR, _LF = "\r", "\n"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as the original (Java) backend counted."""
    return len(text.encode("utf-16-le")) // 2


def dm_body(text: str) -> str:
    """The text if shorter than 30 UTF-16 code units, else its first at most 25 + ``...``, never
    splitting a grapheme."""
    if utf16_len(text) < DM_BODY_LIMIT:
        return text
    kept, used = [], 0
    for cluster in graphemes(text):
        size = utf16_len(cluster)
        if used + size > DM_BODY_KEEP:
            break
        kept.append(cluster)
        used += size
    return "".join(kept) + ELLIPSIS


def dm_burst_body(count: int, latest_text: str | None) -> str:
    """The body for ``count`` messages of one room: the latest one's preview alone for one message,
    else ``새 메시지 N개: <preview>`` (``새 메시지 N개가 도착했습니다`` when the text is gone)."""
    if count <= 1 and latest_text:
        return dm_body(latest_text)
    if not latest_text:
        return f"새 메시지 {max(count, 1)}개가 도착했습니다"
    return f"새 메시지 {count}개: {dm_body(latest_text)}"


#: The evening reminder (title ``소소해피``): the same words every day, one push a day at most.
REMINDER_BODY = "오늘 하루는 어땠나요? 소소한 행복을 한 줄 남겨 보세요 🌙"


def monthly_story_body(month: int, story: MonthStory) -> str:
    """The monthly story: ``<m>월에 <n>일 기록했어요. 평균 행복 <x.y>, 가장 행복했던 순간은 <category>``
    (a gentle line without figures when the month's entries are gone by the time it is sent)."""
    name = f"{month % 100}월"
    if story.days == 0:
        return f"{name}의 소소한 행복을 돌아보세요 🌷"
    text = f"{name}에 {story.days}일 기록했어요. 평균 행복 {story.mean_happiness:.1f}"
    if story.best_category is not None:
        text += f", 가장 행복했던 순간은 {CATEGORY_NAMES.get(story.best_category, story.best_category)}"
    return text + " 🌷"


# Grapheme_Cluster_Break classes used by the rules below.
_OTHER, _CONTROL, _EXTEND, _SPACING, _RI, _L, _V, _T, _LV, _LVT, _ZWJ_CLASS, _CRC, _LFC = range(13)


def _hangul(code: int) -> int | None:
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return _L
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return _V
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return _T
    if 0xAC00 <= code <= 0xD7A3:
        return _LV if (code - 0xAC00) % 28 == 0 else _LVT
    return None


def _break_class(ch: str) -> int:
    if ch == _CR:
        return _CRC
    if ch == _LF:
        return _LFC
    if ch == _ZWJ:
        return _ZWJ_CLASS
    code = ord(ch)
    hangul = _hangul(code)
    if hangul is not None:
        return hangul
    if 0x1F1E6 <= code <= 0x1F1FF:
        return _RI
    if (
        0x1F3FB <= code <= 0x1F3FF  # emoji modifiers (skin tones)
        or 0xE0020 <= code <= 0xE007F  # tags (subdivision flags)
        or code in (0x200C, 0xFF9E, 0xFF9F)  # ZWNJ, halfwidth katakana voiced marks
    ):
        return _EXTEND
    category = unicodedata.category(ch)
    if category in ("Mn", "Me"):
        return _EXTEND  # includes the variation selectors and combining marks
    if category == "Mc":
        return _SPACING
    if category in ("Cc", "Zl", "Zp", "Cf", "Cs"):
        return _CONTROL
    return _OTHER


def _joins(prev: int, cur: int, ri_run: int) -> bool:
    """True when no boundary lies between a character of class ``prev`` and one of class ``cur``."""
    if prev == _CRC and cur == _LFC:
        return True  # GB3
    if prev in (_CONTROL, _CRC, _LFC) or cur in (_CONTROL, _CRC, _LFC):
        return False  # GB4, GB5
    if prev == _L and cur in (_L, _V, _LV, _LVT):
        return True  # GB6
    if prev in (_LV, _V) and cur in (_V, _T):
        return True  # GB7
    if prev in (_LVT, _T) and cur == _T:
        return True  # GB8
    if cur in (_EXTEND, _ZWJ_CLASS, _SPACING):
        return True  # GB9, GB9a
    if prev == _ZWJ_CLASS:
        return True  # GB11, approximated: anything after a ZWJ stays in its cluster
    if prev == _RI and cur == _RI:
        return ri_run % 2 == 1  # GB12, GB13: flags are pairs
    return False  # GB999


def iter_graphemes(text: str) -> Iterator[str]:
    """The extended grapheme clusters of ``text``, in order."""
    start, prev, ri_run = 0, None, 0
    for i, ch in enumerate(text):
        cur = _break_class(ch)
        if prev is not None and not _joins(prev, cur, ri_run):
            yield text[start:i]
            start, ri_run = i, 0
        ri_run = ri_run + 1 if cur == _RI else 0
        prev = cur
    if text:
        yield text[start:]


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text`` as a list."""
    return list(iter_graphemes(text))
