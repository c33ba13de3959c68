"""A workflow whose one activity echoes its input back: every payload kind (workflow input, activity
input and result, workflow result) carries the caller's text (its own module, for the sandbox)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="codec_test_echo")
def echo_activity(text: str) -> str:
    """Returns its input."""
    return text


@workflow.defn(name="CodecTestEchoWorkflow")
class EchoWorkflow:
    """Runs the echo activity once on its input and returns what it answered."""

    @workflow.run
    async def run(self, text: str) -> str:
        """Echo ``text`` through one activity."""
        return await workflow.execute_activity(
            echo_activity, text, start_to_close_timeout=timedelta(seconds=30)
        )
