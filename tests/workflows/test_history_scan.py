"""The history scanner finds what a person reading a history would: in raw bytes, in JSON escapes, in
failure messages; and finds nothing in ciphertext (what an encrypting codec leaves)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from tests.workflows.history_scan import find_secrets

HISTORIES = Path(__file__).with_name("histories")


def _started(payload: Payload) -> HistoryEvent:
    event = HistoryEvent(event_id=1, event_type=EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    event.workflow_execution_started_event_attributes.input.payloads.append(payload)
    return event


def test_the_secrets_of_a_history_recorded_before_issue_14_are_found() -> None:
    path = HISTORIES / "sign_in_kakao.json"
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    found = find_secrets(
        history.events, ["rec@gmail.com", "fcm-2c8808d1ab844c71a4ec769954223386", "absent-needle"]
    )
    assert found[0].startswith("'rec@gmail.com' in event 1 (EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)")
    assert any("fcm-2c8808d1" in f for f in found) and not any("absent-needle" in f for f in found)


def test_json_escapes_and_failure_messages_are_searched() -> None:
    escaped = json.dumps({"text": "비밀 메시지"}).encode()  # ensure_ascii: \\ube44\\ubc00 …
    assert "비밀".encode() not in escaped
    event = _started(Payload(metadata={"encoding": b"json/plain"}, data=escaped))
    assert find_secrets([event], ["비밀 메시지"]) == [
        "'비밀 메시지' in event 1 (EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)"
    ]
    failed = HistoryEvent(event_id=7, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    failed.activity_task_failed_event_attributes.failure.message = "FCM UNREGISTERED: tok-secret-1"
    assert find_secrets([failed], ["tok-secret-1"]) == [
        "'tok-secret-1' in event 7 (EVENT_TYPE_ACTIVITY_TASK_FAILED)"
    ]


def test_nothing_is_found_in_ciphertext() -> None:
    event = _started(
        Payload(metadata={"encoding": b"binary/encrypted", "key-id": b"k1"}, data=os.urandom(256))
    )
    assert find_secrets([event], ["rec@gmail.com", "비밀 메시지"]) == []


def test_needles_too_short_to_mean_anything_are_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        find_secrets([], ["ab"])
