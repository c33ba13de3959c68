"""Storing accepted direct messages: each message's room row (SQL) and document (MongoDB), both or neither.

A message is stored in one SQL transaction whose last step, before the commit, inserts its MongoDB
document; an SQL failure comes before the insert, and a failed insert or commit deletes the document
again by its id (chosen before the transaction, so the undo is idempotent). An insert whose answer was
lost (MongoDB partitioned or hung after the request arrived) may have stored the document all the same,
and its delete then fails as well: the store keeps it owed and deletes it before its next insert
(``MessageStore.withdraw``), so a later message of its room does not bring to light a message its
sender was told was not stored. A replica dying between the insert and the commit (or while it owes a
delete) leaves a document newer than its room's row, which the history does not show
(``dm.conversations.committed_before``) until the room's next message.

``MessageWriter`` is the hub's path for messages whose parties it already knows (its hints): drafts
that arrive while a batch is being written wait for the next batch, which stores all of them in one
transaction with one ``insert_many`` (group commit). Under load a replica then pays the thread hop,
the connection checkout, the commit and the MongoDB round trip once per batch instead of once per
message; a lone message is written at once, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Histogram
from pymongo.errors import ConnectionFailure
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from starlette.concurrency import run_in_threadpool

from dm import rooms as dm_rooms
from dm.messages import MessageStore, Party, StoredMessage
from storage.db import retry_deadlocks
from temporal.ids import dm_room_key

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Messages stored by one transaction at most.
MAX_BATCH = 32
#: Batches one replica writes at the same time (each on its own pooled connection and thread).
CONCURRENT_BATCHES = 2

BATCH_SIZE = Histogram(
    "sosohappy_dm_store_batch_size",
    "Direct messages stored by one transaction (group commit)",
    buckets=(1, 2, 4, 8, 16, MAX_BATCH),
)


@dataclass(frozen=True)
class Draft:
    """A message before its transaction: its id (chosen first, so a failed write is undone by id),
    date and text."""

    id: str
    date: int
    text: str


class Stale(Exception):
    """The room row was not written: the sender or the receiver no longer holds the nickname it was
    named by, or the receiver blocked the sender (``dm.rooms.record_checked``). Nothing was stored."""


Parties = tuple[Party, Party]


@contextmanager
def _undone_on_failure(messages: MessageStore, inserted: list[str]) -> Iterator[None]:
    """Delete the documents ``inserted`` names (filled in by the body) when the body fails."""
    try:
        yield
    except BaseException:
        if inserted:
            try:
                messages.withdraw(inserted)
            except Exception as exc:
                log.warning(
                    "%d DM(s) possibly stored without their room rows, deleted before the next insert: %s",
                    len(inserted),
                    type(exc).__name__,
                )
        raise


def store_message(
    engine: Engine,
    messages: MessageStore,
    draft: Draft,
    accept: Callable[[Any], tuple[Parties, T]],
) -> tuple[StoredMessage, T]:
    """Store ``draft`` in one SQL transaction with ``accept`` (naming the sender and the receiver, looked
    up and checked in the transaction) and the room row, written only while both parties still hold
    those nicknames and no block stands (``Stale`` otherwise); both writes or neither."""
    inserted: list[str] = []
    with _undone_on_failure(messages, inserted), engine.begin() as conn:
        parties, result = accept(conn)
        stored = _recorded(conn, parties, draft)
        if isinstance(stored, Stale):
            raise stored
        inserted.append(stored.id)
        messages.insert_many([(*parties, stored)])
    return stored, result


def _recorded(conn: Any, parties: Parties, draft: Draft) -> StoredMessage | Stale:
    """``draft`` as stored once its room row is written (``dm.rooms.record_checked``), else ``Stale``."""
    sender, receiver = parties
    stored = StoredMessage(draft.id, sender.id, receiver.id, draft.date, draft.text)
    return stored if dm_rooms.record_checked(conn, sender, receiver, stored) else Stale(draft.id)


def store_batch(
    engine: Engine, messages: MessageStore, batch: Sequence[tuple[Parties, Draft]]
) -> list[StoredMessage | Stale]:
    """Store ``batch`` in one SQL transaction and one ``insert_many``: each message's outcome in the
    batch's order, the message as stored or ``Stale`` (its room row's checks failed; the others are
    stored all the same). Both writes of every stored message or of none. The room rows are written in
    the order of their keys, so two batches never wait for each other's rows in a cycle; messages of
    one room keep their order. A deadlock victim is run again (``retry_deadlocks``)."""
    order = sorted(range(len(batch)), key=lambda i: dm_room_key(*(party.id for party in batch[i][0])))

    def transaction() -> list[StoredMessage | Stale]:
        outcomes: dict[int, StoredMessage | Stale] = {}
        inserted: list[str] = []
        with _undone_on_failure(messages, inserted), engine.begin() as conn:
            for i in order:
                outcomes[i] = _recorded(conn, *batch[i])
            accepted = [(*batch[i][0], o) for i, o in outcomes.items() if isinstance(o, StoredMessage)]
            inserted.extend(stored.id for _, _, stored in accepted)
            messages.insert_many(accepted)
        return [outcomes[i] for i in range(len(batch))]

    return retry_deadlocks(transaction)


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says a store is down or unreachable (a lost or refused connection, a timeout),
    not that one message's data was refused."""
    return isinstance(exc, OperationalError | InterfaceError | SQLTimeoutError | ConnectionFailure)


class MessageWriter:
    """Stores drafts whose parties are known, in batches (group commit): a draft waits only for the
    batches already being written when it arrives, at most ``CONCURRENT_BATCHES`` of them, each of at
    most ``MAX_BATCH`` messages."""

    def __init__(self, engine: Engine, messages: MessageStore) -> None:
        self._engine, self._messages = engine, messages
        self._waiting: list[tuple[Parties, Draft, asyncio.Future[StoredMessage]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def store(self, parties: Parties, draft: Draft) -> StoredMessage:
        """Store ``draft`` from ``parties[0]`` to ``parties[1]``: the message as stored; ``Stale`` when
        its room row's checks fail, or the batch's error when its transaction fails (nothing of it
        stored then)."""
        stored: asyncio.Future[StoredMessage] = asyncio.get_running_loop().create_future()
        self._waiting.append((parties, draft, stored))
        if len(self._writers) < CONCURRENT_BATCHES:
            writer = asyncio.ensure_future(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await stored

    async def _write(self) -> None:
        """Write batches of the waiting drafts until none waits."""
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            BATCH_SIZE.observe(len(batch))
            outcomes: list[StoredMessage | BaseException]
            try:
                try:
                    outcomes = list(
                        await run_in_threadpool(
                            store_batch, self._engine, self._messages, [(p, d) for p, d, _ in batch]
                        )
                    )
                except Exception as exc:
                    outcomes = await self._one_by_one(batch, exc)
            except asyncio.CancelledError:  # shutting down: nobody writes the rest
                for _, _, stored in batch + self._waiting:
                    stored.cancel()
                self._waiting = []
                raise
            for (_, _, stored), outcome in zip(batch, outcomes, strict=True):
                if stored.done():  # its sender went away meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    stored.set_exception(outcome)
                else:
                    stored.set_result(outcome)

    async def _one_by_one(
        self, batch: list[tuple[Parties, Draft, asyncio.Future[StoredMessage]]], exc: Exception
    ) -> list[StoredMessage | BaseException]:
        """The outcomes of a batch whose transaction failed with ``exc``: a lone message's is ``exc``,
        and so is every message's when a store is down (``unavailable``: storing them one by one
        would only fail each in turn, one timeout after another). Otherwise the messages are stored
        again one transaction each, so that one message that cannot be stored (its own data refused)
        does not fail the others with it; a store going down meanwhile fails the rest at once."""
        if len(batch) == 1 or unavailable(exc):
            return [exc] * len(batch)
        outcomes: list[StoredMessage | BaseException] = []
        for parties, draft, _ in batch:
            try:
                outcomes += await run_in_threadpool(
                    store_batch, self._engine, self._messages, [(parties, draft)]
                )
            except Exception as alone:
                if unavailable(alone):
                    return outcomes + [alone] * (len(batch) - len(outcomes))
                outcomes.append(alone)
        return outcomes

    async def close(self) -> None:
        """Let the batches being written finish (their callers get their outcomes)."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
