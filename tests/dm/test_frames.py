"""The DM frame's text as a receiver sees it: a message that would show nothing is refused."""

from __future__ import annotations

import json

import pytest

from dm.frames import FrameRefused, parse_frame


def _frame(text: str) -> str:
    return json.dumps({"sender": "ann", "receiver": "bob", "text": text})


@pytest.mark.parametrize(
    "text",
    [
        " \n\t ",
        "\u200b",  # zero-width space: free text keeps it, but alone it is an empty bubble
        "\u200d\u200c\u2060\u200e\u200f",  # joiners, word joiner, direction marks
        "\u3164\u3164",  # Hangul filler (a letter by category, blank on screen)
        "\u115f\u1160\uffa0",
        "\u2800",  # blank braille pattern
        "\u00ad",  # soft hyphen
        "\ufe0f\U000e0100\u034f",  # variation selectors and the combining grapheme joiner
        "\u3000 \u200b\n",  # ideographic space with the rest
    ],
)
def test_a_text_that_shows_nothing_is_refused(text: str) -> None:
    with pytest.raises(FrameRefused) as refused:
        parse_frame(_frame(text), "ann")
    assert refused.value.code == "text"
    assert "show something" in refused.value.reason


@pytest.mark.parametrize(
    "text",
    [".", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u200bㅎ", "\u2764\ufe0f", "\u0645\u200f"],
)
def test_a_text_with_anything_to_see_is_taken(text: str) -> None:
    assert parse_frame(_frame(text), "ann")[2] == text
