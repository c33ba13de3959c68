"""The resign's deleting steps report what the user had when the step began, whichever attempt finishes
it: an attempt whose worker died after deleting some (``tests/workflows/test_resign_durability.py``
kills one for real) leaves its count in its heartbeat, and the next attempt reports that, not what
was left; a step run again over nothing raises nothing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.resign import ResignActivities
from dm.messages import DELETE_BATCH, Party, StoredMessage
from tests.storage.helpers import make_user


def test_a_messages_step_run_again_after_dying_midway_counts_what_the_user_had(
    activity_deps: ActivityDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, bob = (Party(*make_user(activity_deps.engine)) for _ in range(2))
    for date in (1, 2, 3):
        activity_deps.messages.insert(ann, bob, date, "hi")
    step = ResignActivities(activity_deps).delete_user_messages
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)

    with monkeypatch.context() as patched:  # the worker dies after deleting by id, before the rest
        patched.setattr(activity_deps.messages, "delete_legacy", _dies)
        with pytest.raises(AutoReconnect):
            env.run(step, ann.id)
    assert activity_deps.messages.room_page(ann.id, bob.id, before=10, limit=10) == []

    recorded = beats[-1] if beats else ()  # what the server keeps of the attempt that died
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=recorded)
    assert env.run(step, ann.id) == 3
    # Run again over nothing (a new step, as the late-messages deletion is): nothing to count, no error.
    assert ActivityEnvironment().run(step, ann.id) == 0


def test_the_messages_step_heartbeats_after_each_batch(activity_deps: ActivityDeps) -> None:
    """So a worker that dies in it is found out by its heartbeat timeout, however many it deletes."""
    ann, bob = (Party(*make_user(activity_deps.engine)) for _ in range(2))
    activity_deps.messages.insert_many(
        [(ann, bob, StoredMessage(str(ObjectId()), ann.id, bob.id, n, "hi")) for n in range(DELETE_BATCH + 1)]
    )
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    assert env.run(ResignActivities(activity_deps).delete_user_messages, ann.id) == DELETE_BATCH + 1
    assert beats == [(DELETE_BATCH + 1,)] * 3  # the count, then a full batch and the one left


def _dies(_nickname: str, **_batching: object) -> int:
    raise AutoReconnect("connection closed")
