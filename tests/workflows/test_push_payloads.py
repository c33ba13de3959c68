"""Push payloads: the like notice as the original sent it (BACKEND_SPEC §8), DM previews cut at grapheme
boundaries, burst counts, ids-only workflow inputs, and every message fitted within FCM's 4,096 bytes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from firebase_admin import messaging

from activities.fcm_message import FCM_MAX_PAYLOAD_BYTES, Notice, build_message, fitted_message, payload_bytes
from activities.firebase import FCM_BASE_URL, firebase_app
from activities.push_text import dm_body, dm_burst_body, graphemes
from config import Settings
from emulators.fcm import payload_bytes as fcm_counted_bytes
from temporal.ids import dm_room_key, like_collapse_id, nudge_collapse_id
from temporal.push import DmPushRequest, DmPushStart, LikeNotice, like_body, like_push
from workflows.push import FIRST_ATTEMPT, SEND_ATTEMPT


def test_like_payload() -> None:
    assert like_body("mina", "소소해피") == "mina님이 소소해피님의 행복을 응원합니다🩷"
    assert like_body("mina", "소소해피").endswith("\U0001fa77")


def test_like_push_workflow_input_carries_ids_only() -> None:
    req = like_push(5, 6, 7, 2024012017042712)
    assert (req.workflow_id, req.receiver_user_id, req.kind) == ("push:like:5:6", 7, "like")
    assert req.like == LikeNotice(feed_id=5, liker_user_id=6, owner_user_id=7, date=2024012017042712)
    assert (req.title, req.body, req.data) == ("", "", {})  # composed by the send activity


def test_dm_push_workflow_input_carries_ids_only() -> None:
    req = DmPushRequest(receiver_user_id=9, sender_user_id=12)
    assert req.workflow_id == "push:dm-room:9:9-12"  # one per (receiver, room); the room of users 9, 12
    assert DmPushRequest(receiver_user_id=12, sender_user_id=9).workflow_id == "push:dm-room:12:9-12"
    assert set(req.model_dump()) == {
        "receiver_user_id",
        "sender_user_id",
        "window_seconds",
        "deadline_seconds",
        "batches_per_run",
        "carried_message_ids",
        "taken_message_ids",
    }
    # As the outbox keeps a DM push whose start failed: ids and timings, no text or nickname.
    start = DmPushStart(
        receiver_user_id=9, sender_user_id=12, message_id="m", window_seconds=3, deadline_seconds=60
    )
    assert set(start.model_dump()) == {
        "receiver_user_id",
        "sender_user_id",
        "message_id",
        "window_seconds",
        "deadline_seconds",
    }
    assert start.workflow_id == req.workflow_id
    assert start.request == req.model_copy(update={"window_seconds": 3, "deadline_seconds": 60})


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


@pytest.mark.parametrize(
    ("text", "clusters"),
    [
        ("한국어", ["한", "국", "어"]),  # precomposed syllables
        ("\u1112\u1161\u11ab\u1100\u116e\u11a8", ["\u1112\u1161\u11ab", "\u1100\u116e\u11a8"]),  # jamo: 한국
        ("가\u11a8나", ["가\u11a8", "나"]),  # LV syllable + trailing jamo = 각
        ("👨\u200d👩\u200d👧\u200d👦!", ["👨\u200d👩\u200d👧\u200d👦", "!"]),
        ("🇰🇷🇯🇵🇺", ["🇰🇷", "🇯🇵", "🇺"]),  # flags are pairs of regional indicators
        ("e\u0301a", ["e\u0301", "a"]),  # combining acute
        ("1\ufe0f\u20e3", ["1\ufe0f\u20e3"]),  # keycap
        ("a\r\nb", ["a", "\r\n", "b"]),
        (
            "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
            ["🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"],
        ),
        ("", []),
    ],
)
def test_grapheme_clusters(text: str, clusters: list[str]) -> None:
    assert graphemes(text) == clusters
    assert "".join(graphemes(text)) == text


def test_burst_body_counts_the_messages_of_the_room() -> None:
    assert dm_burst_body(1, "안녕!") == "안녕!"
    assert dm_burst_body(5, "마지막 메시지") == "새 메시지 5개: 마지막 메시지"
    assert dm_burst_body(3, "가" * 40) == "새 메시지 3개: " + "가" * 25 + "..."
    assert dm_burst_body(2, None) == "새 메시지 2개가 도착했습니다"


def test_collapse_key_groups_the_notices_of_a_room() -> None:
    encoded = messaging._MessagingService.encode_message(
        build_message("tok", Notice(title="mina", body="hi", collapse_key="dm-3-9"))
    )
    assert encoded["apns"] == {
        "headers": {"apns-collapse-id": "dm-3-9"},
        "payload": {"aps": {"thread-id": "dm-3-9"}},
    }
    assert encoded["android"] == {"collapse_key": "dm-3-9", "notification": {"tag": "dm-3-9"}}
    plain = messaging._MessagingService.encode_message(build_message("tok", Notice(title="a", body="b")))
    assert "apns" not in plain and "android" not in plain


def _encoded(message: messaging.Message) -> dict[str, object]:
    return dict(messaging._MessagingService.encode_message(message))


def test_a_notice_within_the_limit_is_sent_as_it_is() -> None:
    notice = Notice(title="mina", body="안녕" * 100, data={"messageId": "65a1"}, collapse_key="dm-1-2")
    assert _encoded(fitted_message("tok", notice)) == _encoded(build_message("tok", notice))


def test_a_long_body_is_cut_at_a_grapheme_boundary_to_fit() -> None:
    family = "👨\u200d👩\u200d👧"
    body = ("가나다" + family) * 400  # ~ 15 kB
    message = fitted_message(
        "tok", Notice(title="mina", body=body, data={"messageId": "65a1"}, collapse_key="dm-1-2")
    )
    encoded = _encoded(message)
    kept = encoded["notification"]["body"]  # type: ignore[index]
    assert kept.endswith("...") and body.startswith(kept[:-3])
    assert graphemes(kept[:-3]) == graphemes(body)[: len(graphemes(kept[:-3]))]  # whole clusters only
    assert payload_bytes(message) <= FCM_MAX_PAYLOAD_BYTES
    assert FCM_MAX_PAYLOAD_BYTES - payload_bytes(message) < 20  # as much kept as fits
    assert encoded["data"] == {"messageId": "65a1"}  # ids are kept: the body gave way
    assert fcm_counted_bytes(encoded) <= payload_bytes(message)  # we count at least what FCM counts


def test_oversized_data_is_dropped_when_the_body_cannot_make_room() -> None:
    # A DM push started before this change carried the whole frame in data (6 kB for 1,990 Korean
    # characters); such a message is fitted by dropping that entry, never refused by FCM.
    frame = json.dumps({"sender": "mina", "receiver": "jin", "text": "가" * 1990}, ensure_ascii=False)
    message = fitted_message("tok", Notice(title="mina", body="가" * 25 + "...", data={"messageDto": frame}))
    encoded = _encoded(message)
    assert "data" not in encoded
    assert encoded["notification"] == {"title": "mina", "body": "가" * 25 + "..."}
    assert payload_bytes(message) <= FCM_MAX_PAYLOAD_BYTES


def test_a_replace_id_replaces_the_notice_on_the_device_without_an_fcm_collapse_key() -> None:
    encoded = _encoded(build_message("tok", Notice(title="소소해피", body="b", replace_id="like-5-6")))
    assert encoded["apns"] == {
        "headers": {"apns-collapse-id": "like-5-6"}
    }  # no thread: likes group as before
    assert encoded["android"] == {"notification": {"tag": "like-5-6"}}  # no collapse_key: FCM keeps 4 at most


def test_every_push_has_a_collapse_id_from_its_business_key_within_apns_64_bytes() -> None:
    biggest = 2**63 - 1  # BIGINT ids
    ids = [
        like_collapse_id(biggest, biggest),
        nudge_collapse_id("reminder", 99991231),
        nudge_collapse_id("monthly", 999912),
        f"dm-{dm_room_key(biggest - 1, biggest)}",
    ]
    assert ids[:3] == [f"like-{biggest}-{biggest}", "reminder-99991231", "monthly-999912"]
    assert all(len(i.encode()) <= 64 for i in ids)  # apns-collapse-id's limit


def test_a_long_notice_with_a_replace_id_is_fitted_counting_it() -> None:
    notice = Notice(
        title="소소해피", body="가" * 2000, data={"date": "2024012017042712"}, replace_id="like-5-6"
    )
    message = fitted_message("tok", notice)
    encoded = _encoded(message)
    assert encoded["android"] == {"notification": {"tag": "like-5-6"}}
    assert payload_bytes(message) <= FCM_MAX_PAYLOAD_BYTES
    assert fcm_counted_bytes(encoded) <= payload_bytes(message)  # the emulator counts the tag too


def test_a_send_attempt_outlasts_its_http_call(settings: Settings) -> None:
    # An attempt that Temporal times out while its POST still waits for FCM is sent again by the next
    # attempt: the device would be notified twice. Read from the app the worker sends with.
    app = firebase_app(settings)
    service = messaging._get_messaging_service(app)
    timeout = service._client.timeout
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    adapter = service._client.session.get_adapter(settings.fcm_endpoint or FCM_BASE_URL)
    connects = 1 + (adapter.max_retries.connect or 0)
    # google-auth refreshes a service account's access token before the POST with the same timeouts.
    refresh = connect + read
    longest_call = timedelta(seconds=refresh + connects * connect + read)
    assert longest_call < FIRST_ATTEMPT
    assert longest_call < SEND_ATTEMPT
