"""Storing accepted messages on both engines and the MongoDB-wire server: a batch stores each message's
room row and document or neither, a stale message fails alone, and concurrent senders share batches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from prometheus_client import REGISTRY
from pymongo import MongoClient
from pymongo.errors import ServerSelectionTimeoutError
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from devstack.processes import free_port
from dm import rooms as dm_rooms
from dm import writes
from dm.messages import MessageStore, Party, StoredMessage
from dm.writes import MAX_BATCH, Draft, MessageWriter, Stale, store_batch
from tests.storage.helpers import make_user


@pytest.fixture
def messages(mongo_url: str) -> Iterator[MessageStore]:
    client: MongoClient = MongoClient(mongo_url)
    db = f"dm_{uuid.uuid4().hex[:8]}"
    store = MessageStore(client, db)
    store.ensure_indexes()
    yield store
    client.drop_database(db)
    client.close()


def _party(engine: Engine) -> Party:
    return Party(*make_user(engine))


def _draft(date: int, text: str) -> Draft:
    return Draft(str(ObjectId()), date, text)


def _batches() -> tuple[float, float]:
    """Batches written and messages in them, by ``sosohappy_dm_store_batch_size``."""
    count = REGISTRY.get_sample_value("sosohappy_dm_store_batch_size_count") or 0.0
    return count, REGISTRY.get_sample_value("sosohappy_dm_store_batch_size_sum") or 0.0


def _room_texts(messages: MessageStore, a: Party, b: Party) -> list[str]:
    return [m.text for m in messages.room_page(a.id, b.id, before=10**17, limit=100)]


def _latest(engine: Engine, a: Party) -> list[str]:
    with engine.connect() as conn:
        return [m.text for m in dm_rooms.latest_rooms(conn, a.id)]


def test_a_batch_stores_each_message_or_refuses_it_alone(engine: Engine, messages: MessageStore) -> None:
    ann, bob, cat = (_party(engine) for _ in range(3))
    batch = [
        ((cat, ann), _draft(300, "cat to ann")),
        ((ann, Party(bob.id, cat.nickname)), _draft(100, "to a nickname bob does not hold")),
        ((ann, bob), _draft(200, "ann to bob")),
        ((bob, ann), _draft(200, "bob to ann, same date, later in the batch")),
    ]
    outcomes = store_batch(engine, messages, batch)
    assert isinstance(outcomes[1], Stale)
    stored = [o for o in outcomes if isinstance(o, StoredMessage)]
    assert [(s.sender_id, s.receiver_id, s.text) for s in stored] == [
        (cat.id, ann.id, "cat to ann"),
        (ann.id, bob.id, "ann to bob"),
        (bob.id, ann.id, "bob to ann, same date, later in the batch"),
    ]
    assert [s.id for s in stored] == [batch[0][1].id, batch[2][1].id, batch[3][1].id]
    assert messages.by_id(batch[1][1].id) is None
    assert _room_texts(messages, ann, bob) == ["ann to bob", "bob to ann, same date, later in the batch"]
    assert _latest(engine, ann) == ["cat to ann", "bob to ann, same date, later in the batch"]


def test_a_batch_whose_commit_fails_leaves_no_document_and_no_room(
    engine: Engine, messages: MessageStore
) -> None:
    ann, bob = _party(engine), _party(engine)
    batch = [((ann, bob), _draft(100 + i, f"m{i}")) for i in range(3)]

    def fail(_conn: Any) -> None:
        raise RuntimeError("the commit did not happen")

    event.listen(engine, "commit", fail)
    try:
        with pytest.raises(RuntimeError, match="commit did not happen"):
            store_batch(engine, messages, batch)
    finally:
        event.remove(engine, "commit", fail)
    assert all(messages.by_id(draft.id) is None for _, draft in batch)
    assert _latest(engine, ann) == []


def test_concurrent_senders_share_transactions_and_each_gets_its_own_outcome(
    engine: Engine, messages: MessageStore
) -> None:
    users = [_party(engine) for _ in range(6)]
    n = MAX_BATCH + 18
    sends = [((users[i % 3], users[3 + i % 3]), _draft(1000 + i, f"m{i}")) for i in range(n)]
    stale = ((users[0], Party(users[3].id, users[4].nickname)), _draft(999, "to a stale nickname"))
    writer = MessageWriter(engine, messages)
    batches_before = _batches()
    commits: list[Any] = []

    def commit(conn: Any) -> None:
        commits.append(conn)

    event.listen(engine, "commit", commit)

    async def send_all() -> list[StoredMessage | BaseException]:
        calls = [writer.store(parties, draft) for parties, draft in [*sends[:5], stale, *sends[5:]]]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        outcomes = asyncio.run(send_all())
    finally:
        event.remove(engine, "commit", commit)
    # All arrived before either of the two writers ran: one batch of MAX_BATCH and one of the rest.
    assert len(commits) == 2
    assert _batches() == (batches_before[0] + 2, batches_before[1] + n + 1)
    assert isinstance(outcomes[5], Stale)
    stored = [o for i, o in enumerate(outcomes) if i != 5]
    assert [s.text for s in stored if isinstance(s, StoredMessage)] == [f"m{i}" for i in range(n)]
    for k in range(3):
        sent = [f"m{i}" for i in range(k, n, 3)]
        assert _room_texts(messages, users[k], users[3 + k]) == sent
        assert _latest(engine, users[k]) == [sent[-1]]


def test_a_failed_batch_fails_each_of_its_senders_and_the_next_batch_stores(
    engine: Engine, messages: MessageStore
) -> None:
    ann, bob = _party(engine), _party(engine)
    writer = MessageWriter(engine, messages)
    failing = [True]

    def fail(_conn: Any) -> None:
        if failing[0]:
            raise RuntimeError("the commit did not happen")

    async def scenario() -> tuple[list[Any], StoredMessage]:
        lost = await asyncio.gather(
            *(writer.store((ann, bob), _draft(100 + i, f"lost {i}")) for i in range(3)),
            return_exceptions=True,
        )
        failing[0] = False
        return lost, await writer.store((ann, bob), _draft(200, "after"))

    event.listen(engine, "commit", fail)
    try:
        lost, after = asyncio.run(scenario())
    finally:
        event.remove(engine, "commit", fail)
    assert [str(e) for e in lost] == ["the commit did not happen"] * 3
    assert after.text == "after"
    assert _room_texts(messages, ann, bob) == ["after"]
    assert _latest(engine, ann) == ["after"]


def test_a_batch_whose_documents_cannot_be_stored_writes_no_room(engine: Engine) -> None:
    """The MongoDB side fails (nothing listens): the batch's SQL transaction rolls back, so no room
    row names a message that was never stored."""
    ann, bob, cat = (_party(engine) for _ in range(3))
    unreachable: MongoClient = MongoClient(f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=300)
    try:
        batch = [((ann, bob), _draft(100, "to bob")), ((cat, ann), _draft(200, "to ann"))]
        with pytest.raises(ServerSelectionTimeoutError):
            store_batch(engine, MessageStore(unreachable, "dm"), batch)
    finally:
        unreachable.close()
    assert _latest(engine, ann) == []
    assert _latest(engine, cat) == []


def test_one_message_that_cannot_be_stored_does_not_fail_the_others_of_its_batch(
    engine: Engine, messages: MessageStore
) -> None:
    """A lone surrogate has no UTF-8 (the socket refuses such a frame; here it stands for any message
    its own statement fails on): its batch's transaction fails, and the others are stored alone."""
    ann, bob, cat, dan = (_party(engine) for _ in range(4))
    writer = MessageWriter(engine, messages)

    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(
                writer.store((ann, bob), _draft(100, "first")),
                writer.store((cat, dan), _draft(101, "bad \ud800")),
                writer.store((ann, bob), _draft(102, "third")),
                return_exceptions=True,
            )
        )

    before = _batches()
    first, bad, third = asyncio.run(scenario())
    assert _batches() == (before[0] + 1, before[1] + 3)  # one batch of the three
    assert isinstance(bad, Exception) and not isinstance(bad, StoredMessage)
    assert (first.text, third.text) == ("first", "third")
    assert _room_texts(messages, ann, bob) == ["first", "third"]
    assert _room_texts(messages, cat, dan) == [] and _latest(engine, cat) == []


def test_a_batch_failing_because_a_store_is_down_is_not_retried_message_by_message(
    engine: Engine, messages: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost connection is no message's fault: storing the batch's messages one by one would only fail
    each in turn, one timeout after another; they all get the batch's error at once."""
    ann, bob = _party(engine), _party(engine)
    writer = MessageWriter(engine, messages)
    calls: list[int] = []

    def down(_engine: Engine, _messages: MessageStore, batch: Any) -> list[Any]:
        calls.append(len(batch))
        raise OperationalError("INSERT INTO dm_rooms", {}, Exception(2013, "Lost connection"))

    monkeypatch.setattr(writes, "store_batch", down)

    async def scenario() -> list[Any]:
        return list(
            await asyncio.gather(
                *(writer.store((ann, bob), _draft(300 + i, f"m{i}")) for i in range(3)),
                return_exceptions=True,
            )
        )

    outcomes = asyncio.run(scenario())
    assert calls == [3] and all(isinstance(o, OperationalError) for o in outcomes)


def test_a_document_whose_undo_failed_is_deleted_before_the_next_insert(
    engine: Engine, messages: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit fails and so does the delete that undoes the insert (MongoDB unreachable by then, or an
    insert whose answer was lost): the document stays, dated before the room's next message, so once
    that one commits the history would show a message its sender was told was not stored. The store
    owes the delete and makes it before its next insert."""
    ann, bob = _party(engine), _party(engine)
    refused = _draft(100, "refused")

    def fail(_conn: Any) -> None:
        raise RuntimeError("the commit did not happen")

    def unreachable(_ids: Any) -> int:
        raise ServerSelectionTimeoutError("MongoDB unreachable")

    event.listen(engine, "commit", fail)
    with monkeypatch.context() as patched:
        patched.setattr(messages, "delete_many", unreachable)
        try:
            with pytest.raises(RuntimeError, match="commit did not happen"):
                store_batch(engine, messages, [((ann, bob), refused)])
        finally:
            event.remove(engine, "commit", fail)
    assert messages.by_id(refused.id) is not None  # stored, and not undone yet

    store_batch(engine, messages, [((ann, bob), _draft(200, "next"))])
    assert _room_texts(messages, ann, bob) == ["next"]
    assert _latest(engine, ann) == ["next"]
