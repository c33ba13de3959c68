"""firebase-admin, unchanged, against the FCM emulator: sends recorded, failures mapped to its exceptions,
FCM's size limit enforced with FCM's answer, and which INVALID_ARGUMENT answers name the token."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from firebase_admin import exceptions, messaging

from activities.firebase import firebase_app
from activities.push import fcm_reason
from config import Settings
from emulators import fcm
from emulators.control import FcmEmulator


def _message(token: str) -> messaging.Message:
    return messaging.Message(
        token=token,
        notification=messaging.Notification(title="소소해피", body="mina님이 jin님의 행복을 응원합니다🩷"),
        data={"date": "2024012017042712"},
    )


def test_send_is_recorded(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    app = firebase_app(settings)
    name = messaging.send(_message("device-a"), app=app)
    assert name.startswith(f"projects/{settings.fcm_project_id}/messages/")
    [got] = fcm_emulator.messages(token="device-a")
    assert got["message"]["notification"] == {
        "title": "소소해피",
        "body": "mina님이 jin님의 행복을 응원합니다🩷",
    }
    assert got["message"]["data"] == {"date": "2024012017042712"}
    assert fcm_emulator.messages(token="device-b") == []


@pytest.mark.parametrize(
    ("error", "exc_type"),
    [
        ("UNREGISTERED", messaging.UnregisteredError),
        ("INVALID_ARGUMENT", exceptions.InvalidArgumentError),
        ("SENDER_ID_MISMATCH", messaging.SenderIdMismatchError),
        ("QUOTA_EXCEEDED", messaging.QuotaExceededError),
    ],
)
def test_injected_failures_raise_firebase_admin_errors(
    settings: Settings, fcm_emulator: FcmEmulator, error: str, exc_type: type[Exception]
) -> None:
    fcm_emulator.fail("bad-token", error, times=1)
    with pytest.raises(exc_type):
        messaging.send(_message("bad-token"), app=firebase_app(settings))
    # times=1: the next send goes through.
    messaging.send(_message("bad-token"), app=firebase_app(settings))
    assert [a["outcome"] for a in fcm_emulator.attempts("bad-token")] == [error, "accepted"]


@pytest.mark.parametrize(
    ("error", "exc_type"),
    [("UNAVAILABLE", exceptions.UnavailableError), ("INTERNAL", exceptions.InternalError)],
)
def test_server_errors_surface_at_once_for_temporal_to_retry(
    settings: Settings, fcm_emulator: FcmEmulator, error: str, exc_type: type[Exception]
) -> None:
    # firebase_app() turns off firebase-admin's own status retries: Temporal retries, visibly.
    fcm_emulator.fail("flaky", error, retry_after=3600 if error == "UNAVAILABLE" else None)
    with pytest.raises(exc_type) as info:
        messaging.send(_message("flaky"), app=firebase_app(settings))
    if error == "UNAVAILABLE":
        assert info.value.http_response.headers["Retry-After"] == "3600"  # type: ignore[attr-defined]
    assert [a["outcome"] for a in fcm_emulator.attempts("flaky")] == [error]


def test_send_each_fails_only_the_bad_device(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    fcm_emulator.fail("gone", "UNREGISTERED")
    batch = messaging.send_each(
        [_message("ok-1"), _message("gone"), _message("ok-2")], app=firebase_app(settings)
    )
    assert [r.success for r in batch.responses] == [True, False, True]
    assert isinstance(batch.responses[1].exception, messaging.UnregisteredError)
    assert {m["token"] for m in fcm_emulator.messages()} == {"ok-1", "ok-2"}


def _data_message(token: str, data_bytes: int) -> messaging.Message:
    # FCM counts keys and values: key "a" (1 byte) + value.
    return messaging.Message(token=token, data={"a": "x" * (data_bytes - 1)})


def test_an_oversized_message_is_refused_with_fcms_answer(
    settings: Settings, fcm_emulator: FcmEmulator
) -> None:
    app = firebase_app(settings)
    messaging.send(_data_message("big", fcm.MAX_PAYLOAD_BYTES), app=app)  # exactly at the limit: accepted
    with pytest.raises(exceptions.InvalidArgumentError) as info:
        messaging.send(_data_message("big", fcm.MAX_PAYLOAD_BYTES + 1), app=app)
    response = info.value.http_response
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": 400,
            "message": "Android message is too big",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.BadRequest"},
                {
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "INVALID_ARGUMENT",
                },
            ],
        }
    }
    assert [a["outcome"] for a in fcm_emulator.attempts("big")] == ["accepted", "INVALID_ARGUMENT"]
    assert len(fcm_emulator.messages("big")) == 1
    # Not about the token: the push fails as a rejected message and the device is kept.
    assert fcm_reason(info.value) == ("INVALID_MESSAGE", True)


def test_the_notification_counts_with_the_data(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    message = messaging.Message(
        token="both",
        notification=messaging.Notification(title="t", body="가" * 700),  # 2,100 bytes + keys
        data={"a": "x" * 2000},
    )
    with pytest.raises(exceptions.InvalidArgumentError):
        messaging.send(message, app=firebase_app(settings))
    assert fcm_emulator.messages("both") == []


def test_an_invalid_token_is_named_in_the_answer(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    fcm_emulator.fail("bad-token", "INVALID_ARGUMENT", times=1)
    with pytest.raises(exceptions.InvalidArgumentError) as info:
        messaging.send(_message("bad-token"), app=firebase_app(settings))
    error = info.value.http_response.json()["error"]
    assert error["message"] == "The registration token is not a valid FCM registration token"
    assert {
        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
        "errorCode": "INVALID_ARGUMENT",
    } in error["details"]
    violations = [v for d in error["details"] for v in d.get("fieldViolations", [])]
    assert violations == [{"field": "message.token", "description": "Invalid registration token"}]
    assert fcm_reason(info.value) == ("INVALID_ARGUMENT", True)  # the token is bad: it will be removed


#: FCM's documented answer to a target that is not a registration token
#: (firebase.google.com/docs/cloud-messaging/error-codes): no field violation, the message names the
#: registration token.
INVALID_TOKEN_ANSWER = {
    "error": {
        "code": 400,
        "message": "The registration token is not a valid FCM registration token",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "INVALID_ARGUMENT",
            }
        ],
    }
}


@pytest.mark.parametrize("odd", ["two words", "토큰", "tab\there", "nul\x00", "é"])
def test_a_target_that_cannot_be_a_token_is_refused_as_fcm_does(
    settings: Settings, fcm_emulator: FcmEmulator, odd: str
) -> None:
    with pytest.raises(exceptions.InvalidArgumentError) as info:
        messaging.send(_message(odd), app=firebase_app(settings))
    assert info.value.http_response.json() == INVALID_TOKEN_ANSWER
    assert fcm_reason(info.value) == ("INVALID_ARGUMENT", True)  # the token is bad: it will be removed
    assert fcm_emulator.messages(odd) == []
    assert [a["outcome"] for a in fcm_emulator.attempts(odd)] == ["INVALID_ARGUMENT"]


def test_tokens_of_fcms_alphabet_are_taken(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    token = "fMEQd1x2Tk-9tq3Yb0bR5c:APA91bH_Zx-0.9"
    messaging.send(_message(token), app=firebase_app(settings))
    assert len(fcm_emulator.messages(token)) == 1


def test_an_invalid_field_other_than_the_token_keeps_the_token(
    settings: Settings, fcm_emulator: FcmEmulator
) -> None:
    fcm_emulator.fail("good-token", "INVALID_ARGUMENT", times=1, field="message.apns.headers")
    with pytest.raises(exceptions.InvalidArgumentError) as info:
        messaging.send(_message("good-token"), app=firebase_app(settings))
    error = info.value.http_response.json()["error"]
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [
                {"field": "message.apns.headers", "description": "Invalid value at 'message.apns.headers'"}
            ],
        }
    ]
    assert fcm_reason(info.value) == ("INVALID_MESSAGE", True)


def _invalid_argument(body: dict[str, Any]) -> exceptions.InvalidArgumentError:
    response = requests.Response()
    response.status_code = 400
    response._content = json.dumps(body).encode()
    return exceptions.InvalidArgumentError(body["error"]["message"], http_response=response)


def test_fcms_documented_invalid_token_answer_names_the_token() -> None:
    assert fcm_reason(_invalid_argument(INVALID_TOKEN_ANSWER)) == ("INVALID_ARGUMENT", True)
    assert fcm_reason(exceptions.InvalidArgumentError("no response")) == ("INVALID_MESSAGE", True)


def test_the_collapse_fields_count_against_the_limit(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    # A like's replace id becomes the Android notification tag (counted, as FCM counts it); a DM room's
    # collapse key the tag and the APNs thread-id (in the APNs payload, counted too).
    app = firebase_app(settings)
    tag = "like-1234567890-987654321"
    counted = len("tag") + len(tag)
    for collapse in (
        messaging.AndroidConfig(notification=messaging.AndroidNotification(tag=tag)),
        messaging.AndroidConfig(collapse_key=tag, notification=messaging.AndroidNotification(tag=tag)),
    ):
        fits = messaging.Message(token="tagged", data={"a": "x" * (fcm.MAX_PAYLOAD_BYTES - 1 - counted)})
        messaging.send(fits, app=app)  # without the tag: well within
        over = messaging.Message(
            token="tagged", data={"a": "x" * (fcm.MAX_PAYLOAD_BYTES - counted)}, android=collapse
        )
        with pytest.raises(exceptions.InvalidArgumentError):
            messaging.send(over, app=app)  # one byte over, only with the tag
        at_limit = messaging.Message(
            token="tagged", data={"a": "x" * (fcm.MAX_PAYLOAD_BYTES - 1 - counted)}, android=collapse
        )
        messaging.send(at_limit, app=app)
    assert [a["outcome"] for a in fcm_emulator.attempts("tagged")] == [
        "accepted",
        "INVALID_ARGUMENT",
        "accepted",
    ] * 2
    thread = messaging.APNSConfig(payload=messaging.APNSPayload(aps=messaging.Aps(thread_id=tag)))
    apns_bytes = len('{"aps":{"thread-id":""}}') + len(tag)
    with pytest.raises(exceptions.InvalidArgumentError):
        messaging.send(
            messaging.Message(
                token="thread", data={"a": "x" * (fcm.MAX_PAYLOAD_BYTES - apns_bytes)}, apns=thread
            ),
            app=app,
        )
    messaging.send(
        messaging.Message(
            token="thread", data={"a": "x" * (fcm.MAX_PAYLOAD_BYTES - 1 - apns_bytes)}, apns=thread
        ),
        app=app,
    )


def test_a_delayed_answer_comes_late_and_is_taken_then(settings: Settings, fcm_emulator: FcmEmulator) -> None:
    fcm_emulator.delay("slow", 0.2, times=1)
    fcm_emulator.fail("slow", "UNAVAILABLE", times=1)
    with pytest.raises(exceptions.UnavailableError):  # the failure rule applies when the answer is given
        messaging.send(_message("slow"), app=firebase_app(settings))
    messaging.send(_message("slow"), app=firebase_app(settings))
    assert [a["outcome"] for a in fcm_emulator.attempts("slow")] == ["UNAVAILABLE", "accepted"]
