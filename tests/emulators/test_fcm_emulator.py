"""firebase-admin, unchanged, against the FCM emulator: sends recorded, failures mapped to its exceptions."""

from __future__ import annotations

import pytest
from firebase_admin import exceptions, messaging

from activities.firebase import firebase_app
from config import Settings
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
