"""The Mongo message store on the MongoDB-wire server: indexes, insert, a room's page, the room list."""

from __future__ import annotations

import uuid

from pymongo import MongoClient

from dm.messages import MessageStore, room_id


def test_room_id_sorts_by_utf16_code_units() -> None:
    assert room_id("bob", "alice") == "alice,bob"
    # U+FF5E (BMP) sorts after U+1F600 (a surrogate pair, 0xD83D...) in UTF-16 order, unlike code-point order.
    assert room_id("\uff5e", "\U0001f600") == "\U0001f600,\uff5e"


def test_insert_and_page_through_an_indexed_room(mongo_url: str) -> None:
    client: MongoClient = MongoClient(mongo_url)
    db = f"dm_{uuid.uuid4().hex[:8]}"
    store = MessageStore(client, db)
    store.ensure_indexes()
    for i in range(5):
        store.insert("alice", "bob", 2024012010000000 + i, f"hi {i}")
    store.insert("alice", "carol", 2024012010000009, "other room")

    page = store.room_page("bob", "alice", before=2024012010000004, limit=3)
    assert [m.text for m in page] == ["hi 1", "hi 2", "hi 3"]
    assert page[0].wire() == {"sender": "alice", "receiver": "bob", "date": 2024012010000001, "text": "hi 1"}

    indexes = client[db]["message"].index_information()
    assert any(spec["key"][0][0] == "messageRoomId" for spec in indexes.values())
    plan = client[db]["message"].find({"messageRoomId": "alice,bob"}).sort("date", -1).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in winning and "messageRoomId_1_date_-1" in winning, winning
    client.drop_database(db)
    client.close()


def test_a_room_page_reads_through_its_index(mongo_url: str) -> None:
    client: MongoClient = MongoClient(mongo_url)
    db = f"dm_{uuid.uuid4().hex[:8]}"
    store = MessageStore(client, db)
    store.ensure_indexes()
    for i in range(3):
        store.insert("ann", "bob", 2024012010000000 + i, f"hi {i}")
    messages = client[db]["message"]

    # The room page's exact query. (SecantusDB then sorts and limits the index's matches in memory,
    # reported as a SORT stage; MongoDB reads the order off the index and stops at the limit.)
    room = {"messageRoomId": room_id("ann", "bob"), "date": {"$lt": 2024012010000002}}
    plan = messages.find(room).sort([("date", -1), ("_id", -1)]).limit(20).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "'IXSCAN'" in winning and "'messageRoomId_1_date_-1__id_-1'" in winning, winning
    client.drop_database(db)
    client.close()
