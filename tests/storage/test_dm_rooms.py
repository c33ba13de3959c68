"""The DM room list read model on both engines: the latest message of each room by date, newest first,
whatever order messages are recorded in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, insert

from storage import dm_rooms
from storage.db import create_db_engine
from storage.messages import StoredMessage
from storage.models import User

NOW = datetime(2024, 1, 20)


@pytest.fixture(params=["mysql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = create_db_engine(request.getfixturevalue(f"{request.param}_url"))
    yield engine
    engine.dispose()


def _users(engine: Engine, count: int) -> list[tuple[int, str]]:
    made = []
    with engine.begin() as conn:
        for _ in range(count):
            nickname = "r" + uuid.uuid4().hex[:8]
            result = conn.execute(
                insert(User).values(
                    account_email=f"{nickname}@x.dev+kakao",
                    provider="kakao",
                    provider_id="1",
                    nickname=nickname,
                    introduction="",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            assert result.inserted_primary_key is not None
            made.append((int(result.inserted_primary_key[0]), nickname))
    return made


def test_each_room_keeps_its_latest_message_by_date(engine: Engine) -> None:
    (ann, ann_n), (bob, bob_n), (cat, cat_n), (dan, dan_n) = _users(engine, 4)
    sent = [
        (ann, bob, 500, "ann to bob"),
        (bob, ann, 100, "bob to ann, older, recorded last"),
        (cat, ann, 400, "cat to ann"),
        (ann, dan, 300, "ann to dan"),
        (dan, ann, 300, "dan to ann, same date, later"),
    ]
    with engine.begin() as conn:
        for i, (src, dst, date, text) in enumerate(sent):
            message = StoredMessage(f"{i:024x}", "?", "?", date, text)
            dm_rooms.record_message(conn, src, dst, message)
    with engine.connect() as conn:
        rooms = dm_rooms.latest_rooms(conn, ann)
        assert [(m.sender, m.receiver, m.date, m.text) for m in rooms] == [
            (ann_n, bob_n, 500, "ann to bob"),
            (cat_n, ann_n, 400, "cat to ann"),
            (dan_n, ann_n, 300, "dan to ann, same date, later"),
        ]
        assert [m.text for m in dm_rooms.latest_rooms(conn, ann, limit=2)] == ["ann to bob", "cat to ann"]
        assert [m.text for m in dm_rooms.latest_rooms(conn, bob)] == ["ann to bob"]
