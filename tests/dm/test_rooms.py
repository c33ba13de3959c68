"""The DM room list read model on both engines: the latest message of each room by date, newest first,
whatever order messages are recorded in."""

from __future__ import annotations

from sqlalchemy import Engine, insert, update

from dm import rooms as dm_rooms
from dm.messages import Party, StoredMessage
from storage.logins import utcnow
from storage.models import Block, User
from storage.users import RESIGNING_PREFIX
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


def test_a_checked_message_is_recorded_only_while_its_names_and_no_block_hold(engine: Engine) -> None:
    """``record_checked`` is the DM path's one statement: it writes the room row only when both users
    hold the nicknames the replica's cache gave and the receiver has not blocked the sender."""
    (ann, ann_n), (bob, bob_n), (cat, cat_n) = (make_user(engine) for _ in range(3))
    message = StoredMessage("a" * 24, ann, bob, 100, "hi")

    def record(sender: Party, receiver: Party, msg: StoredMessage = message) -> bool:
        with engine.begin() as conn:
            return dm_rooms.record_checked(conn, sender, receiver, msg)

    assert not record(Party(ann, ann_n), Party(bob, cat_n))  # bob does not hold cat's nickname
    assert not record(Party(ann, bob_n), Party(bob, bob_n))  # nor ann bob's
    assert not record(Party(ann, ann_n), Party(ann, ann_n))  # nobody messages themself
    with engine.begin() as conn:
        conn.execute(insert(Block).values(blocker_id=bob, blocked_id=ann, created_at=utcnow()))
    assert not record(Party(ann, ann_n), Party(bob, bob_n))
    with engine.connect() as conn:
        assert dm_rooms.latest_date(conn, ann, bob) is None
    assert record(Party(bob, bob_n), Party(ann, ann_n), StoredMessage("b" * 24, bob, ann, 100, "b to a"))
    assert record(Party(bob, bob_n), Party(ann, ann_n), StoredMessage("c" * 24, bob, ann, 50, "older"))
    assert record(Party(cat, cat_n), Party(ann, ann_n), StoredMessage("d" * 24, cat, ann, 70, "c to a"))
    with engine.connect() as conn:
        assert [(m.text, m.date) for m in dm_rooms.latest_rooms(conn, ann)] == [
            ("b to a", 100),
            ("c to a", 70),
        ]


def test_a_user_who_asked_to_resign_takes_no_message_and_leaves_the_room_list(engine: Engine) -> None:
    """From the resign request on the account is gone for everyone, though its row waits for the
    workflow: ``record_checked`` writes no room row to or from it, and rooms with it leave the list."""
    (ann, ann_n), (bob, bob_n), (cat, cat_n) = (make_user(engine) for _ in range(3))

    def record(sender: tuple[int, str], receiver: tuple[int, str], msg_id: str) -> bool:
        message = StoredMessage(msg_id, sender[0], receiver[0], 100, "hi")
        with engine.begin() as conn:
            return dm_rooms.record_checked(conn, Party(*sender), Party(*receiver), message)

    assert record((ann, ann_n), (bob, bob_n), "a" * 24)
    assert record((cat, cat_n), (ann, ann_n), "b" * 24)
    with engine.begin() as conn:
        conn.execute(update(User).where(User.id == bob).values(account_email=f"{RESIGNING_PREFIX}{bob}"))
    assert not record((ann, ann_n), (bob, bob_n), "c" * 24)
    assert not record((bob, bob_n), (ann, ann_n), "d" * 24)
    with engine.connect() as conn:
        assert [m.text for m in dm_rooms.latest_rooms(conn, ann)] == ["hi"]  # cat's room only
        assert [m.sender for m in dm_rooms.latest_rooms(conn, ann)] == [cat_n]
        assert dm_rooms.latest_rooms(conn, bob) == []
