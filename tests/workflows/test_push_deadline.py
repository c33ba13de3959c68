"""A push whose device keeps failing transiently, with hour-long Retry-After, fails at its deadline
(time-skipping test server, real activities against the FCM emulator and the test database)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.push import PushActivities
from emulators.control import FcmEmulator
from temporal.push import like_push
from tests.workflows.push_helpers import tokens_of, user_with_devices
from tests.workflows.time_skipping import time_skipping_env
from workflows.push import PushDeliveryWorkflow


async def test_transient_failures_past_the_deadline_fail_the_workflow(
    activity_deps: ActivityDeps, fcm_emulator: FcmEmulator
) -> None:
    owner, [token] = user_with_devices(activity_deps, 1)
    fcm_emulator.fail(token, "UNAVAILABLE", retry_after=3600)
    req = like_push(1, 2, owner, 2024012017042712)
    assert req.deadline_seconds == 24 * 3600
    queue = f"push-deadline-{uuid.uuid4()}"
    activities = PushActivities(activity_deps)
    async with time_skipping_env() as env:
        with ThreadPoolExecutor(8) as executor:
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[PushDeliveryWorkflow],
                activity_executor=executor,
                activities=[
                    activities.device_ids,
                    activities.send_to_device,
                    activities.remove_device,
                    activities.record_push_failure,
                ],
            ):
                handle = await env.client.start_workflow(
                    PushDeliveryWorkflow.run, req, id=req.workflow_id, task_queue=queue
                )
                with pytest.raises(WorkflowFailureError) as info:
                    await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "PushUndelivered"
    attempts = fcm_emulator.attempts(token)
    # Retry-After: 3600 is honoured, so about one attempt per hour for 24 hours, none after.
    assert 20 <= len(attempts) <= 26, len(attempts)
    assert {a["outcome"] for a in attempts} == {"UNAVAILABLE"}
    assert tokens_of(activity_deps, owner) == [token]  # transient failures keep the token
