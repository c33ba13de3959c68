"""The MongoDB store of direct messages (database ``dm``, collection ``message``, as the original).

A message belongs to its two users by id: ``senderId``, ``receiverId`` and the room ``roomKey``
(``<low id>-<high id>``) are what every query filters on, so a nickname that changes hands names nobody's
past messages. The original's fields stay in the document as at send time (``sender``, ``receiver``,
``messageRoomId``: the nicknames then, BACKEND_SPEC §5.2); nothing reads them for identity or display:
responses carry the users' current nicknames (``StoredMessage.dto``).

Documents stored before ids existed ("legacy": no ``roomKey``) are converted by ``dm.migrate_messages``;
until then no query returns them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bson import ObjectId
from bson.errors import InvalidId
from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection

from temporal.ids import dm_room_key

COLLECTION = "message"
#: Seconds a MongoDB connection waits for the server's answer before the operation fails: a server
#: that stopped answering without closing (a partition, a hung host) fails the DM or request instead
#: of holding its thread for good, as MySQL's statements do (``storage.db.IO_TIMEOUT_SECONDS``).
SOCKET_TIMEOUT_SECONDS = 60
#: Messages one delete of a resign removes (``delete_user``, ``delete_legacy``): each batch is quick, so
#: the resign step heartbeats often.
DELETE_BATCH = 500
#: Messages of one date a history page holds beyond its count, so that the next page (before that
#: date) misses none (``MessageStore.room_page``). Dates are the clients' within the date tolerance,
#: so only a sender who gives one date to many messages makes more share it; those are cut here.
PAGE_TIES = 100
#: A legacy document: stored by nickname only and not yet converted (nor found unresolvable).
LEGACY = {"roomKey": {"$exists": False}, "unresolved": {"$exists": False}}


def connect(
    url: str, *, selection_ms: int, socket_timeout_ms: int = SOCKET_TIMEOUT_SECONDS * 1000
) -> MongoClient:
    """A process's MongoDB client: a server is looked for ``selection_ms`` before an operation fails, and
    an operation sent waits ``socket_timeout_ms`` for its answer. No I/O until first use."""
    return MongoClient(
        url, serverSelectionTimeoutMS=selection_ms, socketTimeoutMS=socket_timeout_ms, tz_aware=False
    )


def room_id(a: str, b: str) -> str:
    """The original's room of two nicknames: sorted by UTF-16 code units (as Java did), joined with ``,``."""
    first, second = sorted((a, b), key=lambda s: s.encode("utf-16-be"))
    return f"{first},{second}"


class Party(NamedTuple):
    """One side of a message: the user's id and their nickname at send time."""

    id: int
    nickname: str


class MessageDto(BaseModel):
    """A direct message as the client decodes it (``MessageDto``): current nicknames, never ids."""

    sender: str
    receiver: str
    date: int
    text: str


@dataclass(frozen=True)
class StoredMessage:
    """A direct message as stored, identified by its users' ids."""

    id: str
    sender_id: int
    receiver_id: int
    date: int
    text: str

    def dto(self, nicknames: Mapping[int, str]) -> MessageDto:
        """The wire form with the nicknames ``nicknames`` gives the two ids (``""`` for one it lacks)."""
        return MessageDto(
            sender=nicknames.get(self.sender_id, ""),
            receiver=nicknames.get(self.receiver_id, ""),
            date=self.date,
            text=self.text,
        )


@dataclass(frozen=True)
class LegacyMessage:
    """A legacy document's id, the nicknames it was stored under, the sides already pinned to a user id
    (``claim_legacy``), and its date and text (for its room's row)."""

    id: ObjectId
    sender: str
    receiver: str
    sender_id: int | None
    receiver_id: int | None
    date: int = 0
    text: str = ""


def _document(sender: Party, receiver: Party, date: int, text: str) -> dict[str, Any]:
    return {
        "senderId": sender.id,
        "receiverId": receiver.id,
        "roomKey": dm_room_key(sender.id, receiver.id),
        "date": date,
        "text": text,
        # The original's fields, as at send time (never read back).
        "messageRoomId": room_id(sender.nickname, receiver.nickname),
        "sender": sender.nickname,
        "receiver": receiver.nickname,
    }


def _of_user(user_id: int) -> dict[str, Any]:
    return {"$or": [{"senderId": user_id}, {"receiverId": user_id}]}


def _legacy_of(nickname: str) -> dict[str, Any]:
    return {**LEGACY, "$or": [{"sender": nickname}, {"receiver": nickname}]}


def _from_doc(doc: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=str(doc["_id"]),
        sender_id=int(doc["senderId"]),
        receiver_id=int(doc["receiverId"]),
        date=int(doc["date"]),
        text=doc["text"],
    )


class MessageStore:
    """Direct-message history by user id: insert, a room's page before a time boundary, deletion of a
    user's messages, and the conversion of legacy documents."""

    def __init__(self, client: MongoClient, database: str) -> None:
        self._messages: Collection = client[database][COLLECTION]
        #: Documents of messages whose SQL side never committed, whose delete has not succeeded yet.
        self._owed: set[str] = set()
        self._owed_lock = threading.Lock()

    def ensure_indexes(self) -> None:
        """Create the indexes the history page and resign rely on (idempotent)."""
        # ``_id`` last so a page's (date, _id) order is read off the index, never sorted in memory.
        self._messages.create_index([("roomKey", ASCENDING), ("date", DESCENDING), ("_id", DESCENDING)])
        for side in ("senderId", "receiverId"):
            self._messages.create_index([(side, ASCENDING)])

    def insert(self, sender: Party, receiver: Party, date: int, text: str) -> StoredMessage:
        """Store one message and return it with the id the insert gave it."""
        doc = _document(sender, receiver, date, text)
        result = self._messages.insert_one(doc)
        doc["_id"] = result.inserted_id
        return _from_doc(doc)

    def insert_many(self, messages: Sequence[tuple[Party, Party, StoredMessage]]) -> None:
        """Store messages whose ids were chosen before (``(sender, receiver, message)``), in one round
        trip, once the documents still owed a delete are gone (``withdraw``); a failure may leave some
        of them stored (``withdraw`` undoes them by id)."""
        if not messages:
            return
        self.settle()
        docs = []
        for sender, receiver, message in messages:
            doc = _document(sender, receiver, message.date, message.text)
            doc["_id"] = ObjectId(message.id)
            docs.append(doc)
        self._messages.insert_many(docs)

    def by_id(self, message_id: str) -> StoredMessage | None:
        """The message with ``message_id`` (``None`` if it is gone, legacy, or the id is not one of ours)."""
        try:
            doc = self._messages.find_one({"_id": ObjectId(message_id), "roomKey": {"$exists": True}})
        except InvalidId:
            return None
        return _from_doc(doc) if doc is not None else None

    def newest_of(self, message_ids: Sequence[str]) -> StoredMessage | None:
        """The newest of the messages with these ids that still exist (``None`` if none does), in one
        query on ``_id``."""
        ids = []
        for message_id in message_ids:
            try:
                ids.append(ObjectId(message_id))
            except InvalidId:
                continue
        if not ids:
            return None
        docs = list(
            self._messages.find({"_id": {"$in": ids}, "roomKey": {"$exists": True}})
            .sort([("date", DESCENDING), ("_id", DESCENDING)])
            .limit(1)
        )
        return _from_doc(docs[0]) if docs else None

    def delete_many(self, message_ids: Sequence[str]) -> int:
        """Remove the messages with these ids (idempotent); how many were there."""
        ids = [ObjectId(i) for i in message_ids]
        return int(self._messages.delete_many({"_id": {"$in": ids}}).deleted_count)

    def withdraw(self, message_ids: Sequence[str]) -> None:
        """Delete the documents of messages whose SQL side did not commit (``dm.writes``). When the
        delete fails too (MongoDB unreachable, or an insert whose answer was lost may have stored
        them) they stay owed: this store deletes them before its next insert (``settle``), so no later
        message it stores lets the history show them, and raises meanwhile."""
        with self._owed_lock:
            self._owed.update(message_ids)
        self.settle()

    def settle(self) -> None:
        """Delete the documents still owed a delete (``withdraw``); they stay owed if this raises."""
        with self._owed_lock:
            owed = list(self._owed)
        if owed:
            self.delete_many(owed)
            with self._owed_lock:
                self._owed.difference_update(owed)

    def room_page(
        self, a_id: int, b_id: int, before: int, limit: int, *, ties: int = PAGE_TIES
    ) -> list[StoredMessage]:
        """The newest ``limit`` messages between users ``a_id`` and ``b_id`` dated before ``before``,
        oldest first, preceded by up to ``ties`` older ones dated as the oldest of them: the client
        pages back with that date as the next (exclusive) ``before``, so a page that ended inside a
        date would hide that date's remaining messages for good. A second read only when the page
        ends inside a date."""
        room = dm_room_key(a_id, b_id)
        newest_first = [("date", DESCENDING), ("_id", DESCENDING)]
        docs = list(
            self._messages.find({"roomKey": room, "date": {"$lt": before}})
            .sort(newest_first)
            .limit(limit + 1)
        )
        if len(docs) > limit and docs[limit]["date"] == docs[limit - 1]["date"]:
            last = docs[limit - 1]
            same_date = {"roomKey": room, "date": last["date"], "_id": {"$lt": last["_id"]}}
            docs[limit:] = self._messages.find(same_date).sort(newest_first).limit(ties)
        else:
            del docs[limit:]
        return [_from_doc(d) for d in docs][::-1]

    def delete_user(
        self, user_id: int, *, batch: int = DELETE_BATCH, after_batch: Callable[[], object] | None = None
    ) -> int:
        """Delete every message the user sent or received (by id), ``batch`` at a time, calling
        ``after_batch`` after each (an activity's heartbeat); returns how many."""
        return self._delete_batches(_of_user(user_id), batch, after_batch)

    def count_of(self, user_id: int | None, nickname: str | None) -> int:
        """How many messages ``delete_user(user_id)`` and ``delete_legacy(nickname)`` would delete."""
        queries = [_of_user(user_id)] if user_id is not None else []
        queries += [_legacy_of(nickname)] if nickname else []
        return sum(int(self._messages.count_documents(query)) for query in queries)

    # -- legacy documents (stored by nickname before ids existed) ----------------------------------

    def delete_legacy(
        self, nickname: str, *, batch: int = DELETE_BATCH, after_batch: Callable[[], object] | None = None
    ) -> int:
        """Delete the legacy documents naming ``nickname`` on either side, as ``delete_user`` does;
        returns how many."""
        return self._delete_batches(_legacy_of(nickname), batch, after_batch)

    def _delete_batches(
        self, query: dict[str, Any], batch: int, after_batch: Callable[[], object] | None
    ) -> int:
        """Delete what ``query`` matches, ``batch`` documents (found by ``_id``) a delete."""
        deleted = 0
        while ids := [doc["_id"] for doc in self._messages.find(query, {"_id": 1}).limit(batch)]:
            deleted += int(self._messages.delete_many({**query, "_id": {"$in": ids}}).deleted_count)
            if after_batch is not None:
                after_batch()
        return deleted

    def claim_legacy(self, nickname: str, user_id: int) -> int:
        """Pin the legacy documents stored under ``nickname`` to ``user_id`` (the user who held it when
        they were stored, as a pre-upgrade rename says), side by side, so their conversion does not ask
        who holds the name now; returns how many sides were pinned. Idempotent; sides already pinned
        and converted documents are never touched."""
        pinned = 0
        for name_field, id_field in (("sender", "senderId"), ("receiver", "receiverId")):
            query = {**LEGACY, name_field: nickname, id_field: {"$exists": False}}
            pinned += int(self._messages.update_many(query, {"$set": {id_field: user_id}}).modified_count)
        return pinned

    def legacy_batches(self, size: int) -> Iterator[list[LegacyMessage]]:
        """The legacy documents in ``_id`` order, ``size`` at a time (each batch read after the previous
        one was handled, so the caller may convert as it goes)."""
        after: ObjectId | None = None
        while True:
            query: dict[str, Any] = dict(LEGACY)
            if after is not None:
                query["_id"] = {"$gt": after}
            fields = {"sender": 1, "receiver": 1, "senderId": 1, "receiverId": 1, "date": 1, "text": 1}
            docs = list(self._messages.find(query, fields).sort("_id", ASCENDING).limit(size))
            if not docs:
                return
            yield [
                LegacyMessage(
                    d["_id"],
                    str(d.get("sender")),
                    str(d.get("receiver")),
                    d.get("senderId"),
                    d.get("receiverId"),
                    int(d.get("date") or 0),
                    str(d.get("text") or ""),
                )
                for d in docs
            ]
            after = docs[-1]["_id"]

    def attach_ids(self, resolved: Iterable[tuple[ObjectId, int | None, int | None]]) -> tuple[int, int]:
        """Give legacy documents their users' ids: ``(document id, sender id, receiver id)``, ``None``
        for a side whose nickname names nobody. A document with both ids joins its room; one without is
        marked ``unresolved`` (listing the sides) and stays out of every query, though resign still
        deletes it by the id it has. Only documents still legacy are written (idempotent, safe next to
        another run). Returns ``(converted, unresolved)``."""
        operations, converted = [], 0
        for doc_id, sender_id, receiver_id in resolved:
            update: dict[str, Any] = {}
            if sender_id is not None:
                update["senderId"] = sender_id
            if receiver_id is not None:
                update["receiverId"] = receiver_id
            if sender_id is not None and receiver_id is not None:
                update["roomKey"] = dm_room_key(sender_id, receiver_id)
                converted += 1
            else:
                update["unresolved"] = [
                    side
                    for side, found in (("sender", sender_id), ("receiver", receiver_id))
                    if found is None
                ]
            operations.append(UpdateOne({"_id": doc_id, **LEGACY}, {"$set": update}))
        if not operations:
            return 0, 0
        self._messages.bulk_write(operations, ordered=False)
        return converted, len(operations) - converted

    def count_unresolved(self) -> int:
        """Documents whose nicknames named nobody when they were converted."""
        return int(self._messages.count_documents({"unresolved": {"$exists": True}}))
