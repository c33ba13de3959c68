"""The benchmarks' baseline: a workflow that runs one no-op activity (its own module, so the workflow
sandbox imports nothing else)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="bench_noop")
def noop_activity(value: int) -> int:
    """Does nothing: the baseline's single activity."""
    return value


@workflow.defn(name="BenchNoopWorkflow")
class NoopWorkflow:
    """Baseline: one workflow with one no-op activity."""

    @workflow.run
    async def run(self, value: int) -> int:
        """Run the no-op activity once."""
        return await workflow.execute_activity(
            noop_activity, value, start_to_close_timeout=timedelta(seconds=30)
        )


@workflow.defn(name="BenchNoopLocalWorkflow")
class NoopLocalWorkflow:
    """The same with the activity run as a local activity (sign-in's shape)."""

    @workflow.run
    async def run(self, value: int) -> int:
        """Run the no-op activity once, in the worker that runs the workflow."""
        return await workflow.execute_local_activity(
            noop_activity, value, start_to_close_timeout=timedelta(seconds=30)
        )
