"""The conversion of legacy messages (stored by nickname only) to user ids: every resolvable one joins
its room under the right users, the others are marked and reported, a pending pre-upgrade rename defers
it, and running it again changes nothing; ``python -m dm.migrate_messages`` and ``storage.migrate`` run it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import AutoReconnect
from sqlalchemy import Engine, update
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.nickname import ALREADY_APPLIED, NicknameActivities
from config import Settings
from devstack.processes import free_port
from dm import rooms
from dm.messages import MessageStore, Party
from dm.migrate_messages import ConversionReport, convert_legacy_messages
from storage import nickname_changes
from storage.db import create_db_engine, session_factory
from storage.models import User
from temporal.accounts import NicknameChange
from tests.storage.helpers import make_user, run_prestart

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mongo(mongo_url: str) -> Iterator[tuple[MessageStore, Collection, str]]:
    client: MongoClient = MongoClient(mongo_url)
    db = f"dm_conv_{uuid.uuid4().hex[:8]}"
    store = MessageStore(client, db)
    store.ensure_indexes()
    yield store, client[db]["message"], db
    client.drop_database(db)
    client.close()


def _legacy(sender: str, receiver: str, date: int, text: str, **extra: Any) -> dict[str, Any]:
    """A document as the nickname-keyed releases stored it."""
    return {
        "messageRoomId": f"{sender},{receiver}",
        "sender": sender,
        "receiver": receiver,
        "date": date,
        "text": text,
    } | extra


def _rename(engine: Engine, user_id: int, nickname: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(User).where(User.id == user_id).values(nickname=nickname))


def test_legacy_messages_join_their_rooms_by_id_and_the_rest_is_reported(
    own_engine: Engine, mongo: tuple[MessageStore, Collection, str]
) -> None:
    store, collection, _ = mongo
    (ann, ann_n), (bob, bob_n), (cat, cat_n) = (make_user(own_engine) for _ in range(3))
    hangul = "마" + uuid.uuid4().hex[:5]
    (han, _) = make_user(own_engine)
    _rename(own_engine, han, hangul)
    collection.insert_many(
        [
            _legacy(ann_n, bob_n, 1, "ann to bob"),
            _legacy(bob_n, ann_n, 2, "bob to ann"),
            # Stored before nicknames were normalised (revision 0007): its canonical form names the user.
            _legacy(unicodedata.normalize("NFD", hangul), bob_n, 3, "decomposed"),
            # A user gone (or renamed without the rename reaching the messages): nobody to show it to.
            _legacy("ghost", bob_n, 4, "from nobody"),
            # Pinned to its user by a pre-upgrade rename: someone else holds that nickname now.
            _legacy(bob_n, ann_n, 5, "pinned", receiverId=cat),
        ]
    )
    store.insert(Party(ann, ann_n), Party(bob, bob_n), 6, "already by id")
    before = {d["text"]: d for d in collection.find({"text": "already by id"})}

    report = convert_legacy_messages(own_engine, store, batch=2)  # several batches

    assert report == ConversionReport(converted=4, unresolved=1, unresolved_total=1, deferred_for_renames=0)
    assert [m.text for m in store.room_page(ann, bob, before=10, limit=10)] == [
        "ann to bob",
        "bob to ann",
        "already by id",
    ]
    assert [m.text for m in store.room_page(han, bob, before=10, limit=10)] == ["decomposed"]
    assert [m.text for m in store.room_page(bob, cat, before=10, limit=10)] == ["pinned"]
    ghost = collection.find_one({"text": "from nobody"})
    assert ghost is not None and ghost["unresolved"] == ["sender"] and ghost["receiverId"] == bob
    assert "roomKey" not in ghost
    assert {d["text"]: d for d in collection.find({"text": "already by id"})} == before
    # Each converted room has its room-list row at its latest converted message (the room list, and the
    # history pages that end at that row, show it), under the users' current nicknames.
    rooms_of_bob = _room_list(own_engine, bob)
    assert rooms_of_bob == [
        (bob_n, cat_n, 5, "pinned"),
        (hangul, bob_n, 3, "decomposed"),
        (bob_n, ann_n, 2, "bob to ann"),
    ]
    assert _room_list(own_engine, ann) == [(bob_n, ann_n, 2, "bob to ann")]

    # Idempotent: a second run converts nothing and leaves every document and room row as it was.
    documents = sorted(collection.find(), key=lambda d: d["_id"])
    again = convert_legacy_messages(own_engine, store)
    assert again == ConversionReport(converted=0, unresolved=0, unresolved_total=1, deferred_for_renames=0)
    assert sorted(collection.find(), key=lambda d: d["_id"]) == documents
    assert _room_list(own_engine, bob) == rooms_of_bob


def test_a_room_row_already_later_than_the_legacy_messages_is_kept(
    own_engine: Engine, mongo: tuple[MessageStore, Collection, str]
) -> None:
    store, collection, _ = mongo
    (ann, ann_n), (bob, bob_n) = (make_user(own_engine) for _ in range(2))
    collection.insert_many([_legacy(ann_n, bob_n, 1, "old"), _legacy(bob_n, ann_n, 3, "older reply")])
    newer = store.insert(Party(ann, ann_n), Party(bob, bob_n), 7, "sent after the upgrade")
    with own_engine.begin() as conn:
        rooms.record_message(conn, ann, bob, newer)

    assert convert_legacy_messages(own_engine, store).converted == 2
    assert _room_list(own_engine, bob) == [(ann_n, bob_n, 7, "sent after the upgrade")]


def _room_list(engine: Engine, user_id: int) -> list[tuple[str, str, int, str]]:
    with engine.connect() as conn:
        return [(m.sender, m.receiver, m.date, m.text) for m in rooms.latest_rooms(conn, user_id)]


def test_a_pending_pre_upgrade_rename_defers_the_conversion(
    own_engine: Engine, mongo: tuple[MessageStore, Collection, str]
) -> None:
    store, collection, _ = mongo
    (ann, ann_n), (bob, bob_n), (cat, _) = (make_user(own_engine) for _ in range(3))
    # Ann was renamed before the upgrade and the rename has not reached the messages: her old nickname
    # is in the documents, and Cat holds it now.
    collection.insert_one(_legacy(ann_n, bob_n, 1, "ann's"))
    _rename(own_engine, ann, "a" + uuid.uuid4().hex[:7])
    _rename(own_engine, cat, ann_n)
    sessions = session_factory(own_engine)
    with sessions.begin() as session:
        change_id = nickname_changes.next_change_id(session, ann)

    report = convert_legacy_messages(own_engine, store)
    assert report == ConversionReport(converted=0, unresolved=0, unresolved_total=0, deferred_for_renames=1)
    assert "roomKey" not in (collection.find_one() or {"roomKey": "missing document"})

    # The rename's activity pins the documents to Ann, marks the rename applied, and the conversion runs.
    assert store.claim_legacy(ann_n, ann) == 1
    with sessions.begin() as session:
        nickname_changes.mark_applied(session, ann, change_id)
    assert convert_legacy_messages(own_engine, store).converted == 1
    assert [m.text for m in store.room_page(ann, bob, before=10, limit=10)] == ["ann's"]
    assert store.room_page(cat, bob, before=10, limit=10) == []


def test_a_rename_whose_conversion_failed_is_converted_by_the_retry(
    own_engine: Engine,
    mongo: tuple[MessageStore, Collection, str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``rename_in_messages`` records the rename applied, then converts; MongoDB fails during the
    conversion: the retry finds the rename applied and still converts (heartbeating per batch)."""
    store, collection, _ = mongo
    (ann, ann_n), (bob, bob_n) = (make_user(own_engine) for _ in range(2))
    collection.insert_one(_legacy(ann_n, bob_n, 1, "ann's"))
    new = "a" + uuid.uuid4().hex[:7]
    _rename(own_engine, ann, new)
    with session_factory(own_engine).begin() as session:
        change = NicknameChange(
            user_id=ann, old=ann_n, new=new, change_id=nickname_changes.next_change_id(session, ann)
        )
    deps = ActivityDeps(
        settings=settings,
        engine=own_engine,
        sessions=session_factory(own_engine),
        mongo=collection.database.client,
        messages=store,
    )
    rename = NicknameActivities(deps).rename_in_messages
    attach_ids = store.attach_ids
    calls: list[int] = []

    def fails_once(resolved: Any) -> tuple[int, int]:
        calls.append(1)
        if len(calls) == 1:
            raise AutoReconnect("connection closed")
        return attach_ids(resolved)

    monkeypatch.setattr(store, "attach_ids", fails_once)
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    with pytest.raises(AutoReconnect):
        env.run(rename, change)
    with session_factory(own_engine)() as session:
        assert not nickname_changes.is_pending(session, ann, change.change_id or 0)
    assert "roomKey" not in (collection.find_one() or {"roomKey": "missing document"})

    assert len(beats) == 1  # the pinning
    beats.clear()
    env.info = dataclasses.replace(env.info, attempt=2)
    assert env.run(rename, change) == ALREADY_APPLIED
    assert [m.text for m in store.room_page(ann, bob, before=10, limit=10)] == ["ann's"]
    assert len(beats) == 1  # one batch converted
    # A re-delivered start afterwards: nothing legacy is left, nothing changes.
    assert env.run(rename, change) == ALREADY_APPLIED and len(calls) == 2


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    return env | {"SOSOHAPPY_ENV": "test"} | {f"SOSOHAPPY_{k.upper()}": v for k, v in values.items()}


def test_the_pre_start_step_converts_and_reports(
    tmp_path: Path, mongo_url: str, mongo: tuple[MessageStore, Collection, str]
) -> None:
    store, collection, db = mongo
    url = f"sqlite:///{tmp_path / 'prestart.db'}"
    env = _env(database_url=url, mongo_url=mongo_url, mongo_database=db)
    # storage.migrate (the migration Job, before every rollout) migrates the schema, then the messages.
    first = run_prestart(env)
    assert first.returncode == 0, first.stderr
    engine = create_db_engine(url)
    try:
        (ann, ann_n), (bob, bob_n) = make_user(engine), make_user(engine)
    finally:
        engine.dispose()
    collection.insert_many([_legacy(ann_n, bob_n, 1, "hi"), _legacy("ghost", bob_n, 2, "boo")])

    run = run_prestart(env)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    [report] = [line for line in lines if line.get("event") == "messages_converted"]
    assert (report["converted"], report["unresolved"], report["unresolved_total"]) == (1, 1, 1)
    assert report["level"] == "WARNING" and '{"unresolved": {"$exists": true}}' in report["msg"]
    assert lines[-1]["event"] == "migrated"
    assert [m.text for m in store.room_page(ann, bob, before=10, limit=10)] == ["hi"]

    # The step of its own, run again: nothing left to convert.
    again = subprocess.run(
        [sys.executable, "-m", "dm.migrate_messages"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    [line] = [json.loads(x) for x in again.stderr.splitlines() if '"messages_converted"' in x]
    assert (line["converted"], line["unresolved"], line["unresolved_total"]) == (0, 0, 1)


def test_an_unreachable_mongodb_fails_the_pre_start_step_naming_it(tmp_path: Path) -> None:
    env = _env(database_url=f"sqlite:///{tmp_path / 'x.db'}", mongo_url=f"mongodb://127.0.0.1:{free_port()}")
    run = run_prestart(env, timeout="2")
    assert run.returncode == 1
    last = json.loads(run.stderr.splitlines()[-1])
    assert last["event"] == "migrate_failed" and "MongoDB" in last["msg"]
