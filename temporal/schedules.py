"""Bringing a Temporal Schedule to the definition the code gives it, for every schedule of the project
(``temporal.housekeeping``, ``temporal.nudges``): created when missing, otherwise its action, spec and
policy replaced while its pause state and note stay the operator's."""

from __future__ import annotations

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleAction,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.exceptions import ApplicationError

from temporal.codec import NOT_ENCRYPTED


async def ensure_defined(client: Client, schedule_id: str, wanted: Schedule, *, paused: bool = False) -> bool:
    """Create schedule ``schedule_id`` as ``wanted``, or bring an existing one's action, spec and policy
    back to it (pause state and note stay); ``True`` when it was created. ``paused`` applies only to a
    schedule created now."""
    if paused:
        wanted.state = ScheduleState(note="paused when created (tests): trigger it", paused=True)
    try:
        await client.create_schedule(schedule_id, wanted)
        return True
    except ScheduleAlreadyRunningError:
        pass

    async def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        wanted.state = current.description.schedule.state
        action = current.description.schedule.action
        if await same_action(client, action, wanted.action):
            # Keep the stored action as it is: re-encoding its input would change its ciphertext (a new
            # nonce each time) though nothing changed.
            wanted.action = action
        return ScheduleUpdate(schedule=wanted)

    await client.get_schedule_handle(schedule_id).update(update)
    return False


async def same_action(client: Client, stored: ScheduleAction, wanted: ScheduleAction) -> bool:
    """Whether the stored action starts the same workflow as ``wanted``, with the same input once the
    stored payloads are decrypted."""
    if not isinstance(stored, ScheduleActionStartWorkflow) or not isinstance(
        wanted, ScheduleActionStartWorkflow
    ):
        return False
    same = (stored.workflow, stored.id, stored.task_queue) == (wanted.workflow, wanted.id, wanted.task_queue)
    if not same or stored.typed_search_attributes != wanted.typed_search_attributes:
        return False
    converter = client.data_converter
    stored_args = [a for a in stored.args if isinstance(a, Payload)]
    if len(stored_args) != len(stored.args):
        return False
    if converter.payload_codec is not None:
        try:
            stored_args = list(await converter.payload_codec.decode(stored_args))
        except ApplicationError as err:
            if err.type != NOT_ENCRYPTED:
                raise
            return False  # a plain input (written without the codec) is replaced by the definition
    expected = converter.payload_converter.to_payloads(wanted.args)
    return [(dict(a.metadata), a.data) for a in stored_args] == [(dict(a.metadata), a.data) for a in expected]
