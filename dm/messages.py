"""The MongoDB store of direct messages (database ``dm``, collection ``message``, as the original)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection

COLLECTION = "message"
PARTICIPANT_FIELDS = ("sender", "receiver")


def room_id(a: str, b: str) -> str:
    """The room of two nicknames: sorted by UTF-16 code units (as Java did) and joined with ``,``."""
    first, second = sorted((a, b), key=lambda s: s.encode("utf-16-be"))
    return f"{first},{second}"


@dataclass(frozen=True)
class StoredMessage:
    """A direct message as stored and as sent on the wire (``MessageDto``)."""

    id: str
    sender: str
    receiver: str
    date: int
    text: str

    def wire(self) -> dict[str, Any]:
        """The ``MessageDto`` JSON object the client decodes."""
        return {"sender": self.sender, "receiver": self.receiver, "date": self.date, "text": self.text}


def _from_doc(doc: dict[str, Any]) -> StoredMessage:
    return StoredMessage(
        id=str(doc["_id"]),
        sender=doc["sender"],
        receiver=doc["receiver"],
        date=int(doc["date"]),
        text=doc["text"],
    )


class MessageStore:
    """Direct-message history: insert, a room's page before a time boundary, a user's latest per room."""

    def __init__(self, client: MongoClient, database: str) -> None:
        self._messages: Collection = client[database][COLLECTION]

    def ensure_indexes(self) -> None:
        """Create the indexes history and room-list queries rely on (idempotent)."""
        self._messages.create_index([("messageRoomId", ASCENDING), ("date", DESCENDING), ("_id", DESCENDING)])
        # ``_id`` last so the room list's (date, _id) order is read off the index, never sorted in memory.
        for side in PARTICIPANT_FIELDS:
            self._messages.create_index([(side, ASCENDING), ("date", DESCENDING), ("_id", DESCENDING)])

    def insert(self, sender: str, receiver: str, date: int, text: str) -> StoredMessage:
        """Store one message and return it with its id."""
        doc = {
            "messageRoomId": room_id(sender, receiver),
            "date": date,
            "sender": sender,
            "receiver": receiver,
            "text": text,
        }
        result = self._messages.insert_one(doc)
        doc["_id"] = result.inserted_id
        return _from_doc(doc)

    def by_id(self, message_id: str) -> StoredMessage | None:
        """The message with ``message_id`` (``None`` if it is gone or the id is not one of ours)."""
        try:
            doc = self._messages.find_one({"_id": ObjectId(message_id)})
        except InvalidId:
            return None
        return _from_doc(doc) if doc is not None else None

    def room_page(self, a: str, b: str, before: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages of the room of ``a`` and ``b`` dated before ``before``, oldest first."""
        cursor = (
            self._messages.find({"messageRoomId": room_id(a, b), "date": {"$lt": before}})
            .sort([("date", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_from_doc(d) for d in cursor][::-1]

    def delete_participant(self, nickname: str) -> int:
        """Delete every message ``nickname`` sent or received; returns how many."""
        result = self._messages.delete_many({"$or": [{"sender": nickname}, {"receiver": nickname}]})
        return int(result.deleted_count)

    def rename_participant(self, old: str, new: str) -> int:
        """Rewrite ``old`` to ``new`` in senders, receivers and room ids (idempotent); returns rooms touched."""
        if old == new:
            return 0
        self._messages.update_many({"sender": old}, {"$set": {"sender": new}})
        self._messages.update_many({"receiver": old}, {"$set": {"receiver": new}})
        others = set(self._messages.distinct("receiver", {"sender": new}))
        others |= set(self._messages.distinct("sender", {"receiver": new}))
        for other in others:
            pair = {"$or": [{"sender": new, "receiver": other}, {"sender": other, "receiver": new}]}
            self._messages.update_many(pair, {"$set": {"messageRoomId": room_id(new, other)}})
        return len(others)
