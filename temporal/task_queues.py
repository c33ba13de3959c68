"""Task-queue names. Workers poll these; the API starts workflows on them.

Every name is ``<prefix>-<role>`` with the prefix of ``SOSOHAPPY_TEMPORAL_TASK_QUEUE_PREFIX`` (default
``sosohappy``), so two deployments can share a Temporal namespace. The constants are the names under the
default prefix (``workers.registry`` keys its table by them); :func:`named` gives a name under a prefix.
"""

from __future__ import annotations

DEFAULT_PREFIX = "sosohappy"

#: Sign-in, nickname change, resign, housekeeping: account flows that touch MySQL, Mongo and Apple.
ACCOUNTS = f"{DEFAULT_PREFIX}-accounts"
#: Push delivery through firebase-admin.
PUSH = f"{DEFAULT_PREFIX}-push"
#: Sign-in alone: every API process's own worker polls it (eager start, api.sign_in_worker) and so
#: does the worker pool.
SIGN_IN = f"{DEFAULT_PREFIX}-sign-in"

ALL = (ACCOUNTS, PUSH, SIGN_IN)


def named(queue: str, prefix: str) -> str:
    """``queue`` (one of :data:`ALL`) under ``prefix``: ``named(PUSH, "blue")`` is ``blue-push``."""
    if queue not in ALL:
        raise ValueError(f"{queue!r} is not a task queue of temporal.task_queues")
    return prefix + queue[len(DEFAULT_PREFIX) :]
