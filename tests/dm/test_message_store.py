"""The Mongo message store on the MongoDB-wire server: indexes, insert by user id, a room's page,
deletion by user id, and the legacy (nickname-only) documents left to the conversion."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import MongoClient

from dm.messages import MessageStore, Party, room_id

ANN, BOB, CAT = Party(1, "ann"), Party(2, "bob"), Party(3, "cat")


@pytest.fixture
def store(mongo_url: str) -> Iterator[tuple[MessageStore, MongoClient, str]]:
    client: MongoClient = MongoClient(mongo_url)
    db = f"dm_{uuid.uuid4().hex[:8]}"
    store = MessageStore(client, db)
    store.ensure_indexes()
    yield store, client, db
    client.drop_database(db)
    client.close()


def test_room_id_sorts_by_utf16_code_units() -> None:
    assert room_id("bob", "alice") == "alice,bob"
    # U+FF5E (BMP) sorts after U+1F600 (a surrogate pair, 0xD83D...) in UTF-16 order, unlike code-point order.
    assert room_id("\uff5e", "\U0001f600") == "\U0001f600,\uff5e"


def test_insert_and_page_through_a_room_keyed_by_user_ids(
    store: tuple[MessageStore, MongoClient, str],
) -> None:
    messages, client, db = store
    for i in range(5):
        messages.insert(ANN, BOB, 2024012010000000 + i, f"hi {i}")
    messages.insert(ANN, CAT, 2024012010000009, "other room")

    page = messages.room_page(BOB.id, ANN.id, before=2024012010000004, limit=3)
    assert [m.text for m in page] == ["hi 1", "hi 2", "hi 3"]
    assert (page[0].sender_id, page[0].receiver_id) == (ANN.id, BOB.id)
    # Shown with whatever nicknames the caller has for the two ids now.
    assert page[0].dto({1: "ann2", 2: "bob"}).model_dump() == {
        "sender": "ann2",
        "receiver": "bob",
        "date": 2024012010000001,
        "text": "hi 1",
    }
    # The document: ids and the room key, plus the original's fields as at send time (BACKEND_SPEC §5.2).
    doc = client[db]["message"].find_one({"text": "hi 0"})
    assert doc is not None
    assert {
        k: doc[k] for k in ("senderId", "receiverId", "roomKey", "messageRoomId", "sender", "receiver")
    } == {
        "senderId": 1,
        "receiverId": 2,
        "roomKey": "1-2",
        "messageRoomId": "ann,bob",
        "sender": "ann",
        "receiver": "bob",
    }
    assert messages.by_id(str(doc["_id"])) == page[0].__class__(
        str(doc["_id"]), 1, 2, 2024012010000000, "hi 0"
    )
    assert messages.by_id("not-an-object-id") is None


def test_a_room_page_reads_through_its_index(store: tuple[MessageStore, MongoClient, str]) -> None:
    messages, client, db = store
    for i in range(3):
        messages.insert(ANN, BOB, 2024012010000000 + i, f"hi {i}")
    # The room page's exact query. (SecantusDB then sorts and limits the index's matches in memory,
    # reported as a SORT stage; MongoDB reads the order off the index and stops at the limit.)
    room = {"roomKey": "1-2", "date": {"$lt": 2024012010000002}}
    plan = client[db]["message"].find(room).sort([("date", -1), ("_id", -1)]).limit(20).explain()
    winning = str(plan["queryPlanner"]["winningPlan"])
    assert "'IXSCAN'" in winning and "'roomKey_1_date_-1__id_-1'" in winning, winning


def test_delete_user_removes_both_sides_by_id_only(store: tuple[MessageStore, MongoClient, str]) -> None:
    messages, client, db = store
    messages.insert(ANN, BOB, 2024012010000000, "ann to bob")
    messages.insert(CAT, ANN, 2024012010000001, "cat to ann")
    messages.insert(BOB, CAT, 2024012010000002, "bob to cat")
    # Someone else who holds the nickname "ann" now: stored under the same name, another id.
    messages.insert(Party(9, "ann"), BOB, 2024012010000003, "new ann to bob")
    batches: list[int] = []
    assert messages.delete_user(ANN.id, batch=1, after_batch=lambda: batches.append(1)) == 2
    assert len(batches) == 2  # a batch a delete, each followed by the caller's heartbeat
    assert sorted(d["text"] for d in client[db]["message"].find()) == ["bob to cat", "new ann to bob"]


def test_legacy_documents_are_read_by_nobody_and_pinned_only_while_legacy(
    store: tuple[MessageStore, MongoClient, str],
) -> None:
    messages, client, db = store
    collection = client[db]["message"]
    legacy = {"messageRoomId": "ann,bob", "sender": "ann", "receiver": "bob", "date": 1, "text": "old"}
    collection.insert_one(dict(legacy))
    messages.insert(ANN, BOB, 2, "new")
    assert [m.text for m in messages.room_page(ANN.id, BOB.id, before=10, limit=10)] == ["new"]

    # A pre-upgrade rename of user 1 away from "ann" pins the legacy side it names, once.
    assert messages.claim_legacy("ann", ANN.id) == 1
    assert messages.claim_legacy("ann", 7) == 0
    [batch] = list(messages.legacy_batches(10))
    assert [(m.sender, m.receiver, m.sender_id, m.receiver_id) for m in batch] == [("ann", "bob", 1, None)]

    # Converted without a receiver: unresolved, which is final (never read, pinned or converted again).
    assert messages.attach_ids([(batch[0].id, 1, None)]) == (0, 1)
    assert messages.count_unresolved() == 1
    assert list(messages.legacy_batches(10)) == []
    assert messages.claim_legacy("bob", BOB.id) == 0
    assert messages.delete_legacy("ann") == 0
    assert messages.room_page(ANN.id, BOB.id, before=10, limit=10)[0].text == "new"
    assert messages.delete_user(ANN.id) == 2  # resign still reaches it by the id it has


def test_a_page_never_ends_inside_a_date(store: tuple[MessageStore, MongoClient, str]) -> None:
    """The client pages back with the oldest date it got as the next exclusive bound, so a page that
    ended inside a date would hide that date's other messages for good: the page takes them along
    (up to ``ties`` of them), and the next page starts before that date."""
    messages, _, _ = store
    date = 2024012010000000
    messages.insert(ANN, BOB, date - 1, "older")
    for text in ("a", "b", "c", "d"):
        messages.insert(ANN, BOB, date, text)
    messages.insert(BOB, ANN, date + 1, "newest")

    first = messages.room_page(ANN.id, BOB.id, before=date + 2, limit=2)
    assert [m.text for m in first] == ["a", "b", "c", "d", "newest"]  # oldest first, as stored
    assert [m.text for m in messages.room_page(ANN.id, BOB.id, before=first[0].date, limit=2)] == ["older"]
    # A page that ends at a date's last message reads nothing more; one ending inside it is capped.
    assert [m.text for m in messages.room_page(ANN.id, BOB.id, before=date + 2, limit=1)] == ["newest"]
    capped = messages.room_page(ANN.id, BOB.id, before=date + 2, limit=2, ties=1)
    assert [m.text for m in capped] == ["c", "d", "newest"]
