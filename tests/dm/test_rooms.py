"""The DM room list read model on both engines: the latest message of each room by date, newest first,
whatever order messages are recorded in."""

from __future__ import annotations

from sqlalchemy import Engine

from dm import rooms as dm_rooms
from dm.messages import StoredMessage
from tests.storage.helpers import make_user


def test_each_room_keeps_its_latest_message_by_date(engine: Engine) -> None:
    (ann, ann_n), (bob, bob_n), (cat, cat_n), (dan, dan_n) = (make_user(engine) for _ in range(4))
    sent = [
        (ann, bob, 500, "ann to bob"),
        (bob, ann, 100, "bob to ann, older, recorded last"),
        (cat, ann, 400, "cat to ann"),
        (ann, dan, 300, "ann to dan"),
        (dan, ann, 300, "dan to ann, same date, later"),
    ]
    with engine.begin() as conn:
        for i, (src, dst, date, text) in enumerate(sent):
            message = StoredMessage(f"{i:024x}", src, dst, date, text)
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
