"""What every benchmark's entry point shares: SIGTERM ends a run the way Ctrl-C does."""

from __future__ import annotations

import signal
from types import FrameType


def stop_on_sigterm() -> None:
    """Make SIGTERM (``timeout``, ``kill``, a container stop) raise ``KeyboardInterrupt`` in the main
    thread, as SIGINT does, so every ``finally`` and context manager of the run executes: the servers
    it started are stopped and its throwaway database dropped. Python's default is to die at once on
    SIGTERM, leaving them running (they are started in sessions of their own, so no signal sent to the
    benchmark reaches them).

    Call it after the arguments are parsed, in the benchmark's own process only (not in the servers it
    runs from its own module, such as ``--serve`` modes: uvicorn handles SIGTERM itself). Once it has
    fired, further SIGTERMs are ignored so the cleanup can finish; by a Python handler, not ``SIG_IGN``,
    which processes started meanwhile would inherit."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM during the cleanup of an interrupted run: already stopping."""
