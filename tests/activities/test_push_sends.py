"""The push send activities against the FCM emulator, called as the worker calls them: how long a
transient FCM failure asks Temporal to wait before the next attempt."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.push import DeviceSend, PushActivities
from emulators.control import FcmEmulator


def _failed_send(deps: ActivityDeps, token: str, attempt: int = 1) -> ApplicationError:
    """The error of sending a notice to ``token`` on attempt ``attempt``."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    req = DeviceSend(kind="like", token=token, title="소소해피", body="hi")
    with pytest.raises(ApplicationError) as info:
        env.run(PushActivities(deps).send_to_device, req)
    return info.value


@pytest.mark.parametrize(
    ("attempt", "minutes"), [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (12, 10)], ids=lambda v: str(v)
)
def test_quota_exceeded_without_retry_after_backs_off_from_a_minute(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, attempt: int, minutes: int
) -> None:
    token = f"quota-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, "QUOTA_EXCEEDED", times=1)
    err = _failed_send(activity_deps, token, attempt)
    assert (err.type, err.non_retryable) == ("QUOTA_EXCEEDED", False)
    assert err.next_retry_delay == timedelta(minutes=minutes)
    assert [a["outcome"] for a in fcm_emulator.attempts(token)] == ["QUOTA_EXCEEDED"]


@pytest.mark.parametrize("error", ["QUOTA_EXCEEDED", "UNAVAILABLE"])
def test_retry_after_is_honoured_as_given(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator, error: str
) -> None:
    token = f"after-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, error, times=1, retry_after=7)
    err = _failed_send(activity_deps, token, attempt=3)
    assert (err.type, err.next_retry_delay) == (error, timedelta(seconds=7))


def test_other_transient_errors_leave_the_backoff_to_the_retry_policy(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    token = f"internal-{uuid.uuid4().hex[:8]}"
    fcm_emulator.fail(token, "INTERNAL", times=1)
    err = _failed_send(activity_deps, token)
    assert (err.type, err.next_retry_delay) == ("INTERNAL", None)
