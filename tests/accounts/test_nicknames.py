"""The nickname rules: one canonical key per nickname (NFC, trimmed), invisible characters refused,
the length counted after NFC."""

from __future__ import annotations

import unicodedata

import pytest

from accounts.nicknames import (
    MAX_NICKNAME_LENGTH,
    InvalidNickname,
    nickname_key,
    normalize_nickname,
    visible_nickname,
)

NFC_KOREAN = "소소해피"
NFD_KOREAN = unicodedata.normalize("NFD", NFC_KOREAN)
NFC_ACCENT = "José"
NFD_ACCENT = unicodedata.normalize("NFD", NFC_ACCENT)


def test_the_fixtures_really_are_two_forms() -> None:
    assert NFD_KOREAN != NFC_KOREAN and len(NFD_KOREAN) == 8 and len(NFC_KOREAN) == 4
    assert NFD_ACCENT != NFC_ACCENT and len(NFD_ACCENT) == 5


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("alice", "alice"),
        ("alice ", "alice"),
        (" alice", "alice"),
        ("\talice\n", "alice"),
        ("\u3000alice\u00a0", "alice"),  # ideographic and no-break spaces are whitespace too
        (NFD_KOREAN, NFC_KOREAN),
        (f" {NFD_KOREAN} ", NFC_KOREAN),
        (NFD_ACCENT, NFC_ACCENT),
        ("하늘 바다", "하늘 바다"),  # an inner space is kept (the client removes spaces itself)
        ("\U0001f600" * 10, "\U0001f600" * 10),
        ("❤️", "❤️"),  # a variation selector (Mn) is not a format character
    ],
)
def test_every_form_of_a_nickname_has_one_key(raw: str, key: str) -> None:
    assert normalize_nickname(raw) == key
    assert normalize_nickname(key) == key  # idempotent: a key is its own key
    assert nickname_key(raw) == key


@pytest.mark.parametrize(
    ("raw", "code_point"),
    [
        ("ali\u200bce", "U+200B"),  # zero-width space
        ("alice\u200b", "U+200B"),  # not whitespace, so not trimmed either
        ("\ufeffalice", "U+FEFF"),  # byte-order mark / zero-width no-break space
        ("ali\u200dce", "U+200D"),  # zero-width joiner
        ("ali\u200cce", "U+200C"),  # zero-width non-joiner
        ("\u2060alice", "U+2060"),  # word joiner
        ("\u202ealice", "U+202E"),  # right-to-left override
        ("alice\u200f", "U+200F"),  # right-to-left mark
        ("\u2066alice\u2069", "U+2066"),  # left-to-right isolate
        ("ali\u00adce", "U+00AD"),  # soft hyphen
        ("ali\x00ce", "U+0000"),
        ("ali\x07ce", "U+0007"),
        ("ali\nce", "U+000A"),  # inner control characters are refused, not trimmed
        ("ali\x7fce", "U+007F"),
        ("ali\x9bce", "U+009B"),  # C1 control
        ("ali\u2028ce", "U+2028"),  # line separator
        ("ali\u2029ce", "U+2029"),  # paragraph separator
        ("\ud800alice", "U+D800"),  # a lone surrogate (from a JSON escape) cannot be stored
        ("\u3164", "U+3164"),  # Hangul filler: the "blank" Korean nickname
        ("소\u3164", "U+3164"),
        ("\u115f\u1160", "U+115F"),
        ("a\uffa0", "U+FFA0"),
        ("\U000e0041alice", "U+E0041"),  # tag character
    ],
)
def test_control_format_and_invisible_characters_are_refused(raw: str, code_point: str) -> None:
    with pytest.raises(InvalidNickname) as refused:
        normalize_nickname(raw)
    assert refused.value.reason == f"must not contain control, format or invisible characters ({code_point})"
    assert nickname_key(raw) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("\u2800", "control, format or invisible characters (U+2800)"),  # Braille blank: a blank nickname
        ("ab\u2800", "control, format or invisible characters (U+2800)"),  # "ab" with a blank after it
        ("ab\U0001d159", "control, format or invisible characters (U+1D159)"),  # null notehead
        ("a\u200ab", "spaces other than the plain space (U+200A)"),  # hair space: reads as "ab"
        ("a\u2009b", "spaces other than the plain space (U+2009)"),  # thin space
        ("a\u202fb", "spaces other than the plain space (U+202F)"),  # narrow no-break space
        ("a\u3000b", "spaces other than the plain space (U+3000)"),
        ("a\u00a0b", "spaces other than the plain space (U+00A0)"),
        ("\uf8ff", "unassigned or private-use characters (U+F8FF)"),  # the Apple logo on iOS
        ("a\U000f0000", "unassigned or private-use characters (U+F0000)"),
        ("a\u0378", "unassigned or private-use characters (U+0378)"),
    ],
)
def test_blank_space_and_private_characters_are_refused(raw: str, reason: str) -> None:
    """Characters that read as nothing or as another nickname, whose look-alike keys differ: each would
    let a nickname pass for one it is not (``a\u200ab`` for ``ab``), or be blank."""
    with pytest.raises(InvalidNickname) as refused:
        normalize_nickname(raw)
    assert refused.value.reason == f"must not contain {reason}"
    assert nickname_key(raw) is None


def test_one_plain_space_is_kept_but_not_two() -> None:
    assert normalize_nickname("하늘 바다") == "하늘 바다"
    with pytest.raises(InvalidNickname, match="two spaces in a row"):
        normalize_nickname("하늘  바다")


def test_the_length_is_counted_in_characters_after_nfc() -> None:
    ten_syllables = "가나다라마바사아자차"
    decomposed = unicodedata.normalize("NFD", ten_syllables)
    assert len(decomposed) == 20  # 20 code points as sent, 10 characters once composed
    assert normalize_nickname(decomposed) == ten_syllables
    assert normalize_nickname(f"  {decomposed}  ") == ten_syllables
    with pytest.raises(InvalidNickname, match="at most 10 characters"):
        normalize_nickname(unicodedata.normalize("NFD", ten_syllables + "카"))
    assert normalize_nickname("e\u0301" * MAX_NICKNAME_LENGTH) == "é" * MAX_NICKNAME_LENGTH
    with pytest.raises(InvalidNickname, match="at most 10 characters"):
        normalize_nickname("a" * 11)
    # A combining mark with no precomposed form stays a character of its own.
    with pytest.raises(InvalidNickname, match="at most 10 characters"):
        normalize_nickname("q\u0301" * 6)


@pytest.mark.parametrize("raw", [None, "", " ", "\u3000\t\n"])
def test_empty_nicknames_are_refused(raw: str | None) -> None:
    with pytest.raises(InvalidNickname) as refused:
        normalize_nickname(raw)
    assert str(refused.value) == "nickname must not be empty"


def test_commas_and_oversized_raw_values_are_refused() -> None:
    with pytest.raises(InvalidNickname, match="comma"):
        normalize_nickname("a,b")
    with pytest.raises(InvalidNickname, match="at most 10 characters"):
        normalize_nickname(" " * 200 + "alice")  # never normalised: no nickname needs that much
    assert InvalidNickname("must not be empty").for_field("dstNickname") == "dstNickname must not be empty"


def test_sign_in_shows_only_canonical_stored_nicknames() -> None:
    assert visible_nickname("alice") == "alice"
    assert visible_nickname(NFC_KOREAN) == NFC_KOREAN
    assert visible_nickname(None) == ""
    assert visible_nickname("0" * 36) == ""  # the UUID placeholder
    assert visible_nickname(NFD_KOREAN) == ""  # a row the migration could not normalise
    assert visible_nickname("alice\u200b") == ""
    assert visible_nickname("alice ") == ""
