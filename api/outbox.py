"""Workflow starts that must not be lost once the database change is committed (resigns), and pushes
(a like's, a DM's) whose start failed.

A route queues the start in its own transaction (``queue_resign``: a row of ``storage.outbox``),
commits, then calls ``start_now``: the start is tried at once and the row deleted. If Temporal does not
take it, the request still succeeds (the change is committed and its follow-up is queued) and the
``OutboxDrainer`` every API process runs retries it with backoff until it does. Starts are safe to
repeat: a resign's ID is rejected as a duplicate once started (counted as done). Rename rows
(``NicknameChangeWorkflow``) are no longer queued, since messages are keyed by user id; rows queued
before that are still started, each carrying its number, which the workflow and its activity use to
skip one already applied. A push is queued only when its start fails (``queue_push``, after the like's
or the message's commit, from the background task that tried it): its row stands outside the user's
order (``storage.outbox.UNORDERED``) and is started on the push queue. A like's row (``push``) holds
its ``PushRequest`` (ids only), started with the like's workflow id, refused as a duplicate once
started; a DM's row (``dm-push``) holds its ``DmPushStart`` (user and message ids, window, deadline),
signalled-with-start to the room's ``DmPushWorkflow``, which ignores a message it already took. Each
kind is started on its own task queue under the deployment's prefix. Logs name the kind, row and
workflow id, never the payload (it holds nicknames and tokens in rows queued by older APIs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.resources import Resources
from storage import outbox
from storage.outbox import QueuedStart
from temporal import search_attributes as sa
from temporal.accounts import NicknameChange, ResignInput
from temporal.ids import nickname_change_workflow_id, resign_workflow_id
from temporal.push import DmArrived, DmPushOutcome, DmPushRequest, DmPushStart, PushRequest
from temporal.resigns import start_resign
from temporal.task_queues import ACCOUNTS, DEFAULT_PREFIX, named
from temporal.task_queues import PUSH as PUSH_QUEUE
from workflows.dm_push import DmPushWorkflow
from workflows.nickname import NicknameChangeWorkflow
from workflows.push import PushDeliveryWorkflow

log = logging.getLogger(__name__)

RENAME, RESIGN, PUSH, DM_PUSH = "rename", "resign", "push", "dm-push"
KINDS = (RENAME, RESIGN, PUSH, DM_PUSH)
assert set(outbox.UNORDERED) == {PUSH, DM_PUSH}

#: How long a request waits for its own start before leaving it to the drainer (Temporal's client keeps
#: retrying an unreachable frontend for several seconds on its own).
REQUEST_START_SECONDS = 5.0
#: How long one drained start may take; the claim's lease is well above a whole batch of them, so no
#: other drainer takes a row while its start may still be in flight.
DRAIN_START_SECONDS = 10.0
BATCH = 20
LEASE_SECONDS = 120.0

QUEUED = Counter(
    "sosohappy_workflow_starts_queued_total",
    "Workflow starts a request could not make itself and left to the outbox drainer",
    ["kind"],
)
STARTED = Counter(
    "sosohappy_workflow_starts_total",
    "Queued workflow starts that Temporal took, by who started them (request or drainer)",
    ["kind", "path"],
)
FAILED = Counter(
    "sosohappy_workflow_start_failures_total",
    "Attempts to start a queued workflow that failed (retried later)",
    ["kind"],
)
PENDING = Gauge(
    "sosohappy_workflow_starts_pending",
    "Workflow starts waiting in the outbox (the whole database, as this replica last counted it)",
    ["kind"],
)
OLDEST = Gauge(
    "sosohappy_workflow_starts_oldest_seconds",
    "Age of the oldest workflow start waiting in the outbox (0 when none)",
)
for _kind in KINDS:
    PENDING.labels(_kind).set(0)


async def _start_rename(client: Client, payload: str, task_queue: str = ACCOUNTS) -> None:
    change = NicknameChange.model_validate_json(payload)
    await client.start_workflow(
        NicknameChangeWorkflow.run,
        id=nickname_change_workflow_id(change.user_id),
        task_queue=task_queue,
        start_signal="rename",
        start_signal_args=[change],
        search_attributes=sa.about(change.user_id, "nickname-change"),
    )


async def _start_resign(client: Client, payload: str, task_queue: str = ACCOUNTS) -> None:
    req = ResignInput.model_validate_json(payload)
    # Rows queued by an older API also hold the e-mail, nickname and Apple token: not sent on. A
    # refused id is a resign already going (or a re-sent start): that run finishes the job.
    await start_resign(client, req.user_id, req.provider, task_queue, WorkflowIDReusePolicy.REJECT_DUPLICATE)


async def start_push(client: Client, request: PushRequest, task_queue: str = PUSH_QUEUE) -> None:
    """Start ``PushDeliveryWorkflow`` under the event's ID; a repeat raises ``WorkflowAlreadyStartedError``
    (the ID is never reused, even after the first run finished)."""
    await client.start_workflow(
        PushDeliveryWorkflow.run,
        request,
        id=request.workflow_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=sa.about(request.receiver_user_id, f"push-{request.kind}"),
    )


async def _start_push(client: Client, payload: str, task_queue: str = PUSH_QUEUE) -> None:
    try:
        await start_push(client, PushRequest.model_validate_json(payload), task_queue)
    except WorkflowAlreadyStartedError:
        pass  # started before (by the request, which only timed out, or another drainer): done


async def start_dm_push(
    client: Client, request: DmPushRequest, message_id: str, task_queue: str = PUSH_QUEUE
) -> WorkflowHandle[Any, DmPushOutcome]:
    """Hand one stored message to its room's ``DmPushWorkflow`` by signal-with-start: the first message
    of a burst starts it, the next ones join the running one, which ignores a message it already took
    (a repeat is harmless); the handle of that run."""
    return await client.start_workflow(
        DmPushWorkflow.run,
        request,
        id=request.workflow_id,
        task_queue=task_queue,
        # A finished run of this room is history: the next message starts a new run.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="message_arrived",
        start_signal_args=[DmArrived(message_id=message_id)],
        search_attributes=sa.about(request.receiver_user_id, "push-dm"),
    )


async def _start_dm_push(client: Client, payload: str, task_queue: str = PUSH_QUEUE) -> None:
    start = DmPushStart.model_validate_json(payload)
    await start_dm_push(client, start.request, start.message_id, task_queue)


#: How each kind of queued start is made; each is safe to repeat.
Starter = Callable[[Client, str], Awaitable[None]]


def starters_for(prefix: str) -> dict[str, Starter]:
    """The starters of every kind, each on its own task queue under task-queue ``prefix``."""
    return {
        kind: functools.partial(start, task_queue=named(queue, prefix))
        for kind, (start, queue) in _STARTS.items()
    }


_STARTS: dict[str, tuple[Callable[..., Awaitable[None]], str]] = {
    RENAME: (_start_rename, ACCOUNTS),
    RESIGN: (_start_resign, ACCOUNTS),
    PUSH: (_start_push, PUSH_QUEUE),
    DM_PUSH: (_start_dm_push, PUSH_QUEUE),
}
STARTERS: dict[str, Starter] = starters_for(DEFAULT_PREFIX)


def queue_resign(session: Session, req: ResignInput) -> QueuedStart:
    """Queue ``ResignWorkflow`` in the caller's transaction (the caller holds the user's row lock)."""
    workflow_id = resign_workflow_id(req.user_id)
    return outbox.enqueue(session, RESIGN, workflow_id, req.user_id, req.model_dump_json(), LEASE_SECONDS)


#: A push whose start failed, as its outbox row keeps it: a like's (kind ``push``) or a message's to its
#: room (kind ``dm-push``).
QueuedPush = PushRequest | DmPushStart


def queue_push(session: Session, push: QueuedPush, delay_seconds: float, error: str) -> QueuedStart:
    """Queue the start of a push the caller could not make (``error``: why), due after ``delay_seconds``
    and counted as one attempt. The row is the receiver's, outside that user's order; its payload names
    the event by ids (a like's notice and a DM's push carry no text: the send composes it)."""
    kind = PUSH if isinstance(push, PushRequest) else DM_PUSH
    row = outbox.enqueue(session, kind, push.workflow_id, push.receiver_user_id, push.model_dump_json(), 0)
    outbox.retry_later(session, row.id, delay_seconds, error)
    return row


async def push_later(res: Resources, push: QueuedPush, failure: BaseException | None) -> bool:
    """Leave a push whose start failed (``failure``; ``None``: Temporal not connected) to the drainer,
    which is woken; ``False`` when it could not be queued either (the database failed too: logged)."""
    why = "temporal not connected" if failure is None else _error(failure)
    delay = backoff_seconds(1, res.settings.outbox_retry_max_seconds)

    def queue() -> QueuedStart:
        with res.sessions.begin() as session:
            return queue_push(session, push, delay, why)

    try:
        row = await run_in_threadpool(queue)
    except Exception:
        log.exception("push %s could not be queued either: dropped", push.workflow_id)
        return False
    _left_to_drainer(res, row, why, "push start")
    return True


def _error(exc: BaseException) -> str:
    """Why a start failed, for the row and the log: a payload that does not parse is named by type only,
    since pydantic's message quotes the values (nicknames, tokens)."""
    if isinstance(exc, ValidationError) or not str(exc):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"[:200]


def backoff_seconds(attempts: int, maximum: float) -> float:
    """Delay before retry number ``attempts`` (1, 2, 4 … seconds, at most ``maximum``)."""
    return min(maximum, 2.0 ** max(0, attempts - 1))


def _in_transaction(sessions: sessionmaker, change: Callable[..., None], *args: object) -> None:
    with sessions.begin() as session:
        change(session, *args)


async def start_now(res: Resources, queued: QueuedStart) -> bool:
    """After the commit: try the start the request just queued; ``True`` when Temporal took it.

    Never raises: on any failure the row stays queued for the drainer (which is woken) and the caller
    answers as if the start had been made. A row queued behind an earlier one of the same user is left
    to the drainer without a try, so one user's starts keep their order.
    """
    if not queued.claimed:
        QUEUED.labels(queued.kind).inc()
        res.wake_outbox()
        return False
    starters = starters_for(res.settings.temporal_task_queue_prefix)
    why = await _attempt(res.temporal_if_connected, queued, REQUEST_START_SECONDS, starters)
    delay = backoff_seconds(queued.attempts + 1, res.settings.outbox_retry_max_seconds)
    try:
        if why is None:
            await run_in_threadpool(_in_transaction, res.sessions, outbox.done, queued.id)
        else:
            await run_in_threadpool(_in_transaction, res.sessions, outbox.retry_later, queued.id, delay, why)
    except Exception:  # the database failed after the commit: the row's lease runs out instead
        log.exception("outbox row %s could not be updated; the drainer takes it later", queued.id)
    if why is None:
        STARTED.labels(queued.kind, "request").inc()
        return True
    _left_to_drainer(res, queued, why, "workflow start")
    return False


def _left_to_drainer(res: Resources, row: QueuedStart, why: str, what: str) -> None:
    """Count, log (ids only) and wake the drainer for a queued start the request could not make."""
    QUEUED.labels(row.kind).inc()
    log.warning(
        "%s left to the outbox drainer: %s",
        what,
        why,
        extra={"outbox_id": row.id, "kind": row.kind, "workflow_id": row.workflow_id},
    )
    res.wake_outbox()


async def _attempt(
    client: Client | None, queued: QueuedStart, seconds: float, starters: dict[str, Starter] = STARTERS
) -> str | None:
    """Make one start; ``None`` when Temporal took it, else why not (for the row and the log)."""
    starter = starters.get(queued.kind)
    if client is None or starter is None:  # an unknown kind was queued by a newer API: leave it to that
        FAILED.labels(queued.kind).inc()
        return "temporal not connected" if client is None else f"unknown kind {queued.kind!r}"
    try:
        await asyncio.wait_for(starter(client, queued.payload), seconds)
        return None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # unreachable, timed out, refused: all mean "retry later"
        FAILED.labels(queued.kind).inc()
        return _error(exc)


class OutboxDrainer:
    """Starts what requests could not: claims due rows, starts them, deletes them or backs off.

    One per API process (a lifespan task); any number may run against one database, since a claimed
    row is leased to one drainer (``storage.outbox.claim_due``).
    """

    def __init__(
        self,
        sessions: sessionmaker,
        client: Callable[[], Client | None],
        *,
        poll_seconds: float,
        retry_max_seconds: float,
        starters: dict[str, Starter] | None = None,
    ) -> None:
        self._sessions, self._client = sessions, client
        self._poll, self._retry_max = poll_seconds, retry_max_seconds
        self._starters = starters or STARTERS
        self._wake = asyncio.Event()

    @classmethod
    def for_resources(cls, res: Resources) -> OutboxDrainer:
        """The drainer of one API process, started through ``res``'s Temporal client."""
        return cls(
            res.sessions,
            lambda: res.temporal_if_connected,
            poll_seconds=res.settings.outbox_poll_seconds,
            retry_max_seconds=res.settings.outbox_retry_max_seconds,
            starters=starters_for(res.settings.temporal_task_queue_prefix),
        )

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll (call on the drainer's event loop)."""
        self._wake.set()

    async def drain_once(self) -> int:
        """Claim one batch of due rows and start them; returns how many Temporal took.

        After a failure the rest of the batch goes back unstarted (Temporal is most likely down), and
        so does whatever is left when half the lease has passed, so no start outlives its claim.
        """
        client = self._client()
        if client is None:
            return 0
        claimed = await run_in_threadpool(self._claim)
        loop = asyncio.get_running_loop()
        give_back_at = loop.time() + LEASE_SECONDS / 2
        started = 0
        for i, row in enumerate(claimed):
            if loop.time() > give_back_at:
                await run_in_threadpool(self._give_back, claimed[i:], 0)
                break
            why = await _attempt(client, row, DRAIN_START_SECONDS, self._starters)
            if why is None:
                STARTED.labels(row.kind, "drainer").inc()
                await run_in_threadpool(_in_transaction, self._sessions, outbox.done, row.id)
                started += 1
                continue
            delay = backoff_seconds(row.attempts + 1, self._retry_max)
            await run_in_threadpool(_in_transaction, self._sessions, outbox.retry_later, row.id, delay, why)
            log.warning(
                "queued workflow start failed again: %s",
                why,
                extra={"outbox_id": row.id, "kind": row.kind, "attempt": row.attempts + 1},
            )
            await run_in_threadpool(self._give_back, claimed[i + 1 :], delay)
            break
        return started

    def _claim(self) -> list[QueuedStart]:
        with self._sessions.begin() as session:
            return outbox.claim_due(session, LEASE_SECONDS, BATCH)

    def _give_back(self, rows: list[QueuedStart], delay: float) -> None:
        with self._sessions.begin() as session:
            for row in rows:
                outbox.release(session, row.id, delay)

    def _count(self) -> None:
        with self._sessions() as session:
            backlog = outbox.backlog(session)
        for kind in {*KINDS, *backlog.pending}:
            PENDING.labels(kind).set(backlog.pending.get(kind, 0))
        OLDEST.set(backlog.oldest_seconds)

    async def run(self) -> None:
        """Drain until cancelled: at once when woken or after starting something, else every poll."""
        while True:
            self._wake.clear()
            started = 0
            try:
                started = await self.drain_once()
                await run_in_threadpool(self._count)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down, say: try again at the next poll
                log.exception("outbox drain failed")
            if started:
                continue  # the next start of a user may be due now
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll)
            except TimeoutError:
                pass
