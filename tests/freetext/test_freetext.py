"""The free-text rule (``freetext``): letters, emoji with their joiners, line breaks and the directional
marks pass; controls, direction overrides and isolates, and lone surrogates are refused by name."""

from __future__ import annotations

import pytest

from freetext import refused_character


@pytest.mark.parametrize(
    "text",
    [
        "친구랑 카페에서 수다 ☕",
        "line one\nline two\r\n\ttabbed",
        "👩\u200d👩\u200d👧 family, ❤️ with its selector, 🇰🇷",
        "\u200fשלום\u200e and marks",  # RLM / LRM: what right-to-left text uses
        "",
    ],
)
def test_what_people_write_is_taken(text: str) -> None:
    assert refused_character(text) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I love it\u202e!ti etah I", "U+202E"),
        ("nul\x00byte", "U+0000"),
        ("escape \x1b[31m", "U+001B"),
        ("delete\x7f", "U+007F"),
        ("c1 \x85 next line", "U+0085"),
        ("isolate \u2066x\u2069", "U+2066"),
        ("embed \u202ax", "U+202A"),
        ("half a pair \ud800", "lone surrogates"),
    ],
)
def test_what_only_disguises_or_breaks_text_is_refused_by_name(text: str, reason: str) -> None:
    refused = refused_character(text)
    assert refused is not None and reason in refused
