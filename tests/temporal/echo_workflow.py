"""A workflow whose one activity echoes its input back: every payload kind (workflow input, activity
input and result, workflow result) carries the caller's text, and with ``fail_once`` so does the
failure of the activity's first attempt (its own module, for the sandbox)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy


@activity.defn(name="codec_test_echo")
def echo_activity(text: str) -> str:
    """Returns its input."""
    return text


@activity.defn(name="codec_test_echo_after_a_failure")
def echo_after_a_failure(text: str) -> str:
    """Fails its first attempt with an error quoting its input, then returns it."""
    if activity.info().attempt == 1:
        raise RuntimeError(f"could not store {text}")
    return text


@workflow.defn(name="CodecTestEchoWorkflow")
class EchoWorkflow:
    """Runs the echo activity once on its input and returns what it answered."""

    @workflow.run
    async def run(self, text: str, fail_once: bool = False) -> str:
        """Echo ``text`` through one activity (``fail_once``: one whose first attempt fails)."""
        return await workflow.execute_activity(
            echo_after_a_failure if fail_once else echo_activity,
            text,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),
        )
