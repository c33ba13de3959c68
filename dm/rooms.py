"""The DM room list as a read model in the relational store: one row per pair of users holding their
latest message by date, updated in the transaction that accepts each message. The room list is then one
indexed query whose cost grows with the user's rooms, never with their history."""

from __future__ import annotations

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from dm.messages import MessageDto, StoredMessage
from storage.models import DmRoom, User

ROOM_LIST_MAX = 100  # rooms in one room list


def record_message(conn: Connection, sender_id: int, receiver_id: int, message: StoredMessage) -> None:
    """Make ``message`` its room's latest unless a later-dated one is there (equal dates: the newer
    insert wins, as the history orders them)."""
    low, high = sorted((sender_id, receiver_id))
    values = {
        "last_sender_id": sender_id,
        "last_receiver_id": receiver_id,
        "last_date": message.date,
        "last_text": message.text,
        "last_message_id": message.id,
    }
    key = (DmRoom.user_low == low, DmRoom.user_high == high)
    current = conn.execute(select(DmRoom.last_date).where(*key).with_for_update()).first()
    if current is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(DmRoom).values(user_low=low, user_high=high, **values))
            return
        except IntegrityError:  # the first message of this pair arrived twice at once
            current = conn.execute(select(DmRoom.last_date).where(*key).with_for_update()).first()
    if current is not None and message.date >= current[0]:
        conn.execute(update(DmRoom).where(*key).values(**values))


def latest_date(conn: Connection, user_a: int, user_b: int) -> int | None:
    """The date of the latest message of the room of two users (``None``: they have no room)."""
    low, high = sorted((user_a, user_b))
    query = select(DmRoom.last_date).where(DmRoom.user_low == low, DmRoom.user_high == high)
    return conn.execute(query).scalar()


def latest_rooms(conn: Connection, user_id: int, limit: int = ROOM_LIST_MAX) -> list[MessageDto]:
    """The latest message of each of the user's rooms, newest first (ties: the later stored), with both
    users' current nicknames (joined in the same query)."""
    sender, receiver = aliased(User), aliased(User)
    rows = conn.execute(
        select(DmRoom.last_message_id, sender.nickname, receiver.nickname, DmRoom.last_date, DmRoom.last_text)
        .join(sender, sender.id == DmRoom.last_sender_id)
        .join(receiver, receiver.id == DmRoom.last_receiver_id)
        .where(or_(DmRoom.user_low == user_id, DmRoom.user_high == user_id))
        .order_by(DmRoom.last_date.desc(), DmRoom.last_message_id.desc())
        .limit(limit)
    )
    return [MessageDto(sender=r[1] or "", receiver=r[2] or "", date=int(r[3]), text=r[4]) for r in rows]
