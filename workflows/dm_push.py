"""``DmPushWorkflow``: the DMs of one room to an offline receiver become one push per few seconds.

One workflow runs per (receiver, room) at a time, ID ``push:dm-room:<receiver id>:<low id>-<high id>``.
The API signals each stored message to it with signal-with-start, so the first message of a burst
starts it and the next ones join it. It waits ``window_seconds`` (a workflow timer), then sends one push
for everything gathered, with the count in the body; messages that arrive meanwhile make the next batch,
again one window later. So a room never pushes more than once per window, and every message is counted
in exactly one push. Only ids cross Temporal: devices are addressed by registration id, and the send
activity reads the token, the sender's nickname and the newest message's text itself (runs without the
``push-by-device-id`` patch marker address tokens).

A message signalled while the run completes makes Temporal refuse the completion and replay the run
with the signal, so the loop sends it too; a run that has sent many batches continues as new with what
it has not pushed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.push import DM_CHECKED_MESSAGES, DmDeviceSend, PushActivities
    from temporal.push import DmArrived, DmPushOutcome, DmPushRequest, PushOutcome
    from workflows.push import (
        BY_DEVICE_ID,
        STEPS_IN_DEADLINE,
        Steps,
        deliver_to_device,
        devices_of,
        raise_if_failed,
        send_attempts,
        settle,
    )


@workflow.defn(sandboxed=False)  # a hot path: see workflows/__init__.py, "Outside the sandbox"
class DmPushWorkflow:
    """Gathers the messages of one room for one receiver and pushes them in batches, one per window."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._seen: set[str] = set()
        self._by_id = False
        self._steps_in_deadline = False

    @workflow.signal(name="message_arrived")
    def message_arrived(self, arrived: DmArrived) -> None:
        """One more message for the receiver; a message signalled twice counts once."""
        if arrived.message_id not in self._seen:
            self._seen.add(arrived.message_id)
            self._pending.append(arrived.message_id)

    @workflow.run
    async def run(self, req: DmPushRequest) -> DmPushOutcome:
        """Push every gathered message, one push per batch; returns how many pushes and messages, and
        what the last push did per device."""
        self._by_id = workflow.patched(BY_DEVICE_ID)
        self._steps_in_deadline = workflow.patched(STEPS_IN_DEADLINE)
        carried = [m for m in req.carried_message_ids if m not in self._seen]
        self._seen.update(carried)
        self._pending = carried + self._pending  # signal-with-start: the signal is handled before run
        if not self._pending:  # started without a message (by hand): wait one window for one
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: bool(self._pending), timeout=req.window_seconds)
        outcome = DmPushOutcome()
        while self._pending:
            await workflow.sleep(timedelta(seconds=req.window_seconds))
            batch, self._pending = self._pending, []
            outcome.last = await self._push(req, batch)
            outcome.pushes += 1
            outcome.messages += len(batch)
            if self._pending and (
                outcome.pushes >= req.batches_per_run or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(req.model_copy(update={"carried_message_ids": self._pending}))
        raise_if_failed(outcome.last, req.deadline_seconds)
        return outcome

    async def _push(self, req: DmPushRequest, batch: list[str]) -> PushOutcome:
        steps = Steps.within(req.deadline_seconds) if self._steps_in_deadline else Steps()
        device_list = await devices_of(req.receiver_user_id, self._by_id, steps)
        send = DmDeviceSend(
            receiver_user_id=req.receiver_user_id,
            sender_user_id=req.sender_user_id,
            message_id=batch[-1],
            count=len(batch),
            earlier_message_ids=batch[-DM_CHECKED_MESSAGES:-1],
        )

        def sender(device: int | str) -> Awaitable[Any]:
            address = {"device_id": device} if isinstance(device, int) else {"token": device}
            # Regular activities only (no local first attempt): a message signalled while a send runs
            # makes Temporal refuse the run's completion, and a local send would run again on replay.
            return send_attempts(
                PushActivities.send_dm_to_device,
                send.model_copy(update=address),
                req.deadline_seconds,
                local_first=False,
            )

        wf_id = workflow.info().workflow_id
        results = await asyncio.gather(
            *(deliver_to_device("dm", wf_id, d, functools.partial(sender, d), steps) for d in device_list)
        )
        return settle(device_list, list(results))
