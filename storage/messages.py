"""The MongoDB store of direct messages (database ``dm``, collection ``message``, as the original)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection

COLLECTION = "message"
PARTICIPANT_FIELDS = ("sender", "receiver")
ROOM_LIST_MAX = 100  # rooms in one room list; bounds the reply and the per-side pipelines


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


def _recency(doc: dict[str, Any]) -> tuple[int, Any]:
    """Which of two messages is later: by ``date``, then by ``_id`` (ObjectIds grow with insertion)."""
    return int(doc["date"]), doc["_id"]


def latest_per_room_pipeline(side: str, nickname: str, limit: int) -> list[dict[str, Any]]:
    """The aggregation behind one side (``sender`` or ``receiver``) of ``MessageStore.latest_per_room``:
    the last message of each room where ``nickname`` is on that side, newest first, at most ``limit``."""
    if side not in PARTICIPANT_FIELDS:
        raise ValueError(f"side must be one of {PARTICIPANT_FIELDS}, got {side!r}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")  # Mongo refuses {$limit: 0}
    newest_first = {"date": DESCENDING, "_id": DESCENDING}
    return [
        {"$match": {side: nickname}},
        {"$sort": newest_first},  # MongoDB reads this order off the (side, date, _id) index
        {"$group": {"_id": "$messageRoomId", "last": {"$first": "$$ROOT"}}},
        {"$replaceRoot": {"newRoot": "$last"}},
        {"$sort": newest_first},
        {"$limit": limit},
    ]


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

    def room_page(self, a: str, b: str, before: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages of the room of ``a`` and ``b`` dated before ``before``, oldest first."""
        cursor = (
            self._messages.find({"messageRoomId": room_id(a, b), "date": {"$lt": before}})
            .sort([("date", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [_from_doc(d) for d in cursor][::-1]

    def latest_per_room(self, nickname: str, limit: int = ROOM_LIST_MAX) -> list[StoredMessage]:
        """The last message (greatest ``date``, ties: latest inserted) of each of up to ``limit`` rooms
        ``nickname`` takes part in, newest first.

        One pipeline per side rather than one ``$match`` on ``$or``: each starts with an equality on an
        indexed field, so it reads the ``(side, date, _id)`` index on MongoDB and SecantusDB alike
        (SecantusDB plans a top-level ``$or`` as a collection scan). A room's last message is the later
        of its two sides' last ones, and a room among the ``limit`` newest overall is among the ``limit``
        newest of the side its last message is on, so ``limit`` per side is enough.
        """
        latest: dict[str, dict[str, Any]] = {}
        for side in PARTICIPANT_FIELDS:
            for doc in self._messages.aggregate(latest_per_room_pipeline(side, nickname, limit)):
                held = latest.get(doc["messageRoomId"])
                if held is None or _recency(doc) > _recency(held):
                    latest[doc["messageRoomId"]] = doc
        newest = sorted(latest.values(), key=_recency, reverse=True)[:limit]
        return [_from_doc(d) for d in newest]

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
