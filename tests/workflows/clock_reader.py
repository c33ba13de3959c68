"""A workflow that runs outside the sandbox, as the hot workflows do, and reads the wall clock, as no
workflow may: what ``test_replay`` shows the replay's sandbox refusing. Its own module, so the sandbox
can import it without the test module's imports."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow


@workflow.defn(sandboxed=False)
class ReadsTheWallClock:
    """Answers the worker's wall-clock time (non-deterministic on replay)."""

    @workflow.run
    async def run(self) -> str:
        """The mistake the replay's sandbox must catch."""
        return datetime.now().isoformat()
