"""Push payloads as the original sent them (BACKEND_SPEC §8), with safe DM truncation."""

from __future__ import annotations

from temporal.push import dm_body, dm_push, like_push


def test_like_payload() -> None:
    req = like_push(5, 6, "mina", 7, "소소해피", 2024012017042712)
    assert (req.title, req.body, req.data) == (
        "소소해피",
        "mina님이 소소해피님의 행복을 응원합니다🩷",
        {"date": "2024012017042712"},
    )
    assert req.body.endswith("\U0001fa77")
    assert (req.workflow_id, req.receiver_user_id, req.kind) == ("push:like:5:6", 7, "like")


def test_dm_payload_carries_the_raw_frame() -> None:
    frame = '{"sender":"mina","receiver":"jin","date":2024012017042712,"text":"hi"}'
    req = dm_push("65a1", "mina", 9, "hi", frame)
    assert (req.title, req.body, req.data, req.workflow_id) == (
        "mina",
        "hi",
        {"messageDto": frame},
        "push:dm:65a1",
    )


def test_short_text_is_sent_whole() -> None:
    assert dm_body("a" * 29) == "a" * 29
    assert dm_body("가" * 29) == "가" * 29


def test_long_text_keeps_25_code_units() -> None:
    assert dm_body("a" * 30) == "a" * 25 + "..."
    assert dm_body("안녕하세요" * 10) == ("안녕하세요" * 5) + "..."


def test_surrogate_pairs_are_not_split() -> None:
    # 24 ASCII units + an emoji (2 UTF-16 units) would end mid-pair at 25: the emoji is left out whole.
    text = "a" * 24 + "😀" + "b" * 10
    assert dm_body(text) == "a" * 24 + "..."
    assert dm_body("😀" * 20) == "😀" * 12 + "..."


def test_emoji_sequences_are_not_split() -> None:
    family = "👨\u200d👩\u200d👧"  # 8 UTF-16 units, one grapheme
    text = "a" * 20 + family + "z" * 10
    assert dm_body(text) == "a" * 20 + "..."
    thumbs = "👍🏽"  # emoji + skin tone
    assert dm_body("a" * 23 + thumbs + "z" * 10) == "a" * 23 + "..."
    flag = "🇰🇷"
    assert dm_body("a" * 22 + flag + "z" * 10) == "a" * 22 + flag[:0] + "..."
