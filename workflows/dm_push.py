"""``DmPushWorkflow``: the DMs of one room to an offline receiver become one push per few seconds.

One workflow runs per (receiver, room) at a time, ID ``push:dm-room:<receiver id>:<low id>-<high id>``.
The API signals each stored message to it with signal-with-start, so the first message of a burst
starts it and the next ones join it. It waits ``window_seconds`` (a workflow timer), then sends one push
for everything gathered, with the count in the body; messages that arrive meanwhile make the next batch,
again one window later. So a room never pushes more than once per window, and every message is counted
in exactly one push. Only ids cross Temporal: devices are addressed by registration id, and the send
activity reads the token, the sender's nickname and the newest message's text itself (runs without the
``push-by-device-id`` patch marker address tokens).

Each device of a batch is delivered on its own (patch marker ``dm-push-per-device``): the next batch
never waits for a device still retrying an earlier one (a device FCM keeps refusing, with QUOTA_EXCEEDED
or INTERNAL, retries for up to the deadline). A batch for a device whose earlier delivery is still
retrying supersedes it: that delivery is cancelled and the new notice, under the room's collapse key,
replaces the earlier one on the device anyway. (Runs without the marker send batch by batch, every
device of one batch before the next.)

A message signalled while the run completes makes Temporal refuse the completion and replay the run
with the signal, so the loop sends it too; a run that has sent many batches continues as new with what
it has not pushed yet (cancelling the deliveries still retrying: its first batch goes to every device).

A message is taken once: a repeated signal of it (a queued start the outbox drainer repeats, after the
API's own start timed out yet went through) is ignored while it is pending and after it was pushed. Runs
with the ``dm-push-signal-once`` patch marker remember the newest ``TAKEN_KEPT`` messages they took and
carry them over a continue-as-new (runs without it forget what earlier runs pushed, and never forget
within a run). A run that has *completed* is history: a repeat reaching the room after it starts a new
run and pushes that message once more, under the room's collapse key (README, "Push delivery").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import islice
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.push import DM_CHECKED_MESSAGES, DmDeviceSend, PushActivities
    from temporal.push import DmArrived, DmPushOutcome, DmPushRequest, PushOutcome
    from workflows.push import (
        BY_DEVICE_ID,
        STEPS_IN_DEADLINE,
        Steps,
        deliver_to_device,
        devices_of,
        failure_cause,
        raise_if_failed,
        send_attempts,
        settle,
    )


#: ``workflow.patched`` id of delivering each device of a batch on its own (``DmPushWorkflow``): a batch
#: never waits for a device still retrying an earlier one, and supersedes that delivery.
PER_DEVICE = "dm-push-per-device"
#: ``workflow.patched`` id of remembering at most ``TAKEN_KEPT`` taken messages, carried over a
#: continue-as-new, so a repeated signal of one is ignored in the continued run too.
SIGNAL_ONCE = "dm-push-signal-once"
#: How many of the messages it took (pushed or being pushed) a run remembers to ignore repeats of: the
#: room's newest ones, minutes of messages at the DM rate limits, far beyond a drained repeat's delay.
TAKEN_KEPT = 1000


@dataclass
class _Delivery:
    """One batch's delivery to one device, running on its own."""

    task: asyncio.Task[None] | None = None
    #: A later batch (or a continue-as-new) took its place: its end is not a result.
    superseded: bool = field(default=False)


@workflow.defn(sandboxed=False)  # a hot path: see workflows/__init__.py, "Outside the sandbox"
class DmPushWorkflow:
    """Gathers the messages of one room for one receiver and pushes them in batches, one per window."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        #: Every message taken (pending or pushed), oldest first: a dict as an ordered set.
        self._seen: dict[str, None] = {}
        self._signal_once = False
        self._by_id = False
        self._steps_in_deadline = False
        #: The latest delivery to each device (by id, as text) and what each finished one did.
        self._deliveries: dict[str, _Delivery] = {}
        self._results: dict[str, str] = {}

    @workflow.signal(name="message_arrived")
    def message_arrived(self, arrived: DmArrived) -> None:
        """One more message for the receiver; a message signalled twice counts once."""
        if arrived.message_id not in self._seen:
            self._seen[arrived.message_id] = None
            self._pending.append(arrived.message_id)

    @workflow.run
    async def run(self, req: DmPushRequest) -> DmPushOutcome:
        """Push every gathered message, one push per batch; returns how many pushes and messages, and
        what the last push did per device."""
        self._by_id = workflow.patched(BY_DEVICE_ID)
        self._steps_in_deadline = workflow.patched(STEPS_IN_DEADLINE)
        per_device = workflow.patched(PER_DEVICE)
        self._signal_once = workflow.patched(SIGNAL_ONCE)
        if self._signal_once:  # a signal handled before run may repeat a message earlier runs took
            taken = set(req.taken_message_ids)
            self._pending = [m for m in self._pending if m not in taken]
            self._seen = dict.fromkeys([*req.taken_message_ids, *self._seen])
        carried = [m for m in req.carried_message_ids if m not in self._seen]
        self._seen.update(dict.fromkeys(carried))
        self._pending = carried + self._pending  # signal-with-start: the signal is handled before run
        if not self._pending:  # started without a message (by hand): wait one window for one
            with contextlib.suppress(asyncio.TimeoutError):
                await workflow.wait_condition(lambda: bool(self._pending), timeout=req.window_seconds)
        outcome = DmPushOutcome()
        if per_device:
            return await self._run_per_device(req, outcome)
        while self._pending:
            await workflow.sleep(timedelta(seconds=req.window_seconds))
            batch = self._take()
            outcome.last = await self._push(req, batch)
            outcome.pushes += 1
            outcome.messages += len(batch)
            if self._pending and (
                outcome.pushes >= req.batches_per_run or workflow.info().is_continue_as_new_suggested()
            ):
                self._continue_as_new(req)
        raise_if_failed(outcome.last, req.deadline_seconds)
        return outcome

    async def _run_per_device(self, req: DmPushRequest, outcome: DmPushOutcome) -> DmPushOutcome:
        """The batches of a run with the ``dm-push-per-device`` marker: each device's delivery runs on
        its own; the run ends once no message is pending and every delivery has ended."""
        last_devices: list[int] | list[str] = []
        while True:
            if not self._pending:
                await workflow.wait_condition(lambda: bool(self._pending) or not self._running())
                if not self._pending:
                    break
            if outcome.pushes >= req.batches_per_run or workflow.info().is_continue_as_new_suggested():
                outcome.superseded += await self._supersede_all()
                self._continue_as_new(req)
            await workflow.sleep(timedelta(seconds=req.window_seconds))
            batch = self._take()
            steps = Steps.within(req.deadline_seconds) if self._steps_in_deadline else Steps()
            last_devices = await devices_of(req.receiver_user_id, self._by_id, steps)
            for device in last_devices:
                outcome.superseded += self._start(req, batch, device, steps)
            outcome.pushes += 1
            outcome.messages += len(batch)
        for delivery in self._deliveries.values():  # all ended: a delivery's own error fails the run
            if delivery.task is not None:
                await delivery.task
        outcome.last = settle(last_devices, [self._results[str(d)] for d in last_devices])
        raise_if_failed(outcome.last, req.deadline_seconds)
        return outcome

    def _take(self) -> list[str]:
        """The pending messages, as the next batch; with the ``dm-push-signal-once`` marker the run
        forgets all but the newest ``TAKEN_KEPT`` messages it took (none is pending now)."""
        batch, self._pending = self._pending, []
        if self._signal_once and len(self._seen) > TAKEN_KEPT:
            for message_id in list(islice(self._seen, len(self._seen) - TAKEN_KEPT)):
                del self._seen[message_id]
        return batch

    def _continue_as_new(self, req: DmPushRequest) -> NoReturn:
        """Continue as new with the messages not yet pushed (and, with the ``dm-push-signal-once``
        marker, the newest ones taken, whose repeats the next run ignores)."""
        update: dict[str, Any] = {"carried_message_ids": self._pending}
        if self._signal_once:
            pending = set(self._pending)
            taken = [m for m in self._seen if m not in pending]
            update["taken_message_ids"] = taken[-TAKEN_KEPT:]
        workflow.continue_as_new(req.model_copy(update=update))

    def _running(self) -> bool:
        return any(d.task is not None and not d.task.done() for d in self._deliveries.values())

    def _start(self, req: DmPushRequest, batch: list[str], device: int | str, steps: Steps) -> int:
        """Start delivering ``batch`` to ``device``, superseding its delivery still running (then 1)."""
        earlier = self._deliveries.get(str(device))
        superseded = self._supersede(earlier) if earlier is not None else 0
        delivery = _Delivery()
        delivery.task = asyncio.create_task(self._deliver(req, batch, device, steps, delivery))
        self._deliveries[str(device)] = delivery
        return superseded

    @staticmethod
    def _supersede(delivery: _Delivery) -> int:
        """Cancel ``delivery`` if it is still running (its activity gets a cancel request); 1 if so."""
        if delivery.task is None or delivery.task.done():
            return 0
        delivery.superseded = True
        delivery.task.cancel()
        return 1

    async def _supersede_all(self) -> int:
        """Cancel every delivery still running and let them end (before a continue-as-new)."""
        superseded = sum(self._supersede(d) for d in self._deliveries.values())
        await asyncio.gather(*(d.task for d in self._deliveries.values() if d.task is not None))
        return superseded

    async def _deliver(
        self, req: DmPushRequest, batch: list[str], device: int | str, steps: Steps, delivery: _Delivery
    ) -> None:
        """Deliver ``batch`` to ``device`` and record what it did, unless a later batch superseded it."""
        send = self._send_to(req, batch, device)

        async def cancellable() -> Any:
            try:
                return await send()
            except ActivityError as err:
                if isinstance(failure_cause(err), CancelledError):  # superseded: not a send's failure
                    raise asyncio.CancelledError from None
                raise

        try:
            result = await deliver_to_device("dm", workflow.info().workflow_id, device, cancellable, steps)
        except BaseException:
            if delivery.superseded:  # cancelled in its send or a step: a later batch took its place
                return
            raise
        if not delivery.superseded:
            self._results[str(device)] = result

    def _send_to(self, req: DmPushRequest, batch: list[str], device: int | str) -> functools.partial[Any]:
        """The send of ``batch`` to ``device``: a regular activity retried until the deadline."""
        address: dict[str, Any] = {"device_id": device} if isinstance(device, int) else {"token": device}
        send = DmDeviceSend(
            receiver_user_id=req.receiver_user_id,
            sender_user_id=req.sender_user_id,
            message_id=batch[-1],
            count=len(batch),
            earlier_message_ids=batch[-DM_CHECKED_MESSAGES:-1],
            **address,
        )
        # Regular activities only (no local first attempt): a message signalled while a send runs
        # makes Temporal refuse the run's completion, and a local send would run again on replay.
        return functools.partial(
            send_attempts, PushActivities.send_dm_to_device, send, req.deadline_seconds, local_first=False
        )

    async def _push(self, req: DmPushRequest, batch: list[str]) -> PushOutcome:
        """One batch to every device, all of them before the next batch (runs without the
        ``dm-push-per-device`` marker)."""
        steps = Steps.within(req.deadline_seconds) if self._steps_in_deadline else Steps()
        device_list = await devices_of(req.receiver_user_id, self._by_id, steps)

        def sender(device: int | str) -> Awaitable[Any]:
            return self._send_to(req, batch, device)()

        wf_id = workflow.info().workflow_id
        results = await asyncio.gather(
            *(deliver_to_device("dm", wf_id, d, functools.partial(sender, d), steps) for d in device_list)
        )
        return settle(device_list, list(results))
