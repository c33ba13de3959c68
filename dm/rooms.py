"""The DM room list as a read model in the relational store: one row per pair of users holding their
latest message by date, updated in the transaction that accepts each message. The room list is then one
indexed query whose cost grows with the user's rooms, never with their history."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, exists, func, or_, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.orm import aliased

from dm.messages import MessageDto, Party, StoredMessage
from storage.models import Block, DmRoom, User
from storage.users import not_resigning

ROOM_LIST_MAX = 100  # rooms in one room list


def record_message(conn: Connection, sender_id: int, receiver_id: int, message: StoredMessage) -> None:
    """Make ``message`` its room's latest unless a later-dated one is there (equal dates: the newer
    insert wins, as the history orders them): one upsert statement."""
    conn.execute(_statement(conn.dialect.name, checked=False), _room_values(sender_id, receiver_id, message))


def record_checked(conn: Connection, sender: Party, receiver: Party, message: StoredMessage) -> bool:
    """``record_message`` only when, as the statement runs, ``sender`` and ``receiver`` hold those
    nicknames, are two users, neither asked to resign, and the receiver has not blocked the sender; False (nothing written)
    otherwise. One statement (an ``INSERT … SELECT`` upsert), so the checks and the room row are one
    round trip and a replica's cached nicknames can never store a message under a stale one."""
    params = _room_values(sender.id, receiver.id, message)
    params |= {"sender_nickname": sender.nickname, "receiver_nickname": receiver.nickname}
    return bool(conn.execute(_statement(conn.dialect.name, checked=True), params).rowcount)


@functools.cache
def _statement(dialect: str, checked: bool) -> Any:
    """The upsert of one room row for ``dialect``, built once (its values are bound parameters named
    as the columns; ``checked`` adds the nickname and block conditions of ``record_checked``)."""
    columns = DmRoom.__table__.c
    insert = mysql.insert(DmRoom) if dialect in ("mysql", "mariadb") else sqlite.insert(DmRoom)
    if not checked:
        return _on_conflict(
            insert.values({k: bindparam(k, type_=columns[k].type) for k in _COLUMNS}), dialect
        )
    users, blocks = User.__table__, Block.__table__
    to, by = users.alias("receiver"), users.alias("sender")
    binds = {k: bindparam(k, type_=columns[k].type) for k in _COLUMNS}
    sender_id, receiver_id = binds["last_sender_id"], binds["last_receiver_id"]
    source = (
        select(*(bind.label(k) for k, bind in binds.items()))
        .select_from(to)
        .where(
            to.c.id == receiver_id,
            to.c.nickname == bindparam("receiver_nickname"),
            to.c.id != sender_id,
            not_resigning(to.c),
            exists().where(
                by.c.id == sender_id, by.c.nickname == bindparam("sender_nickname"), not_resigning(by.c)
            ),
            ~exists().where(blocks.c.blocker_id == receiver_id, blocks.c.blocked_id == sender_id),
        )
    )
    return _on_conflict(insert.from_select(list(_COLUMNS), source), dialect)


_COLUMNS = (
    "user_low",
    "user_high",
    "last_sender_id",
    "last_receiver_id",
    "last_date",
    "last_text",
    "last_message_id",
)


def _room_values(sender_id: int, receiver_id: int, message: StoredMessage) -> dict[str, Any]:
    low, high = sorted((sender_id, receiver_id))
    return {
        "user_low": low,
        "user_high": high,
        "last_sender_id": sender_id,
        "last_receiver_id": receiver_id,
        "last_date": message.date,
        "last_text": message.text,
        "last_message_id": message.id,
    }


_LATEST = ("last_sender_id", "last_receiver_id", "last_text", "last_message_id", "last_date")


def _on_conflict(stmt: Any, dialect: str) -> Any:
    """The room's existing row takes the message only when it is not older than the row's latest.
    MySQL assigns left to right, each seeing the columns already set, so ``last_date`` goes last;
    SQLite's ``SET`` sees the old row throughout."""
    table = DmRoom.__table__.c
    if dialect in ("mysql", "mariadb"):
        newer = stmt.inserted.last_date >= table.last_date
        return stmt.on_duplicate_key_update(
            [(c, func.if_(newer, stmt.inserted[c], table[c])) for c in _LATEST]
        )
    newer = stmt.excluded.last_date >= table.last_date
    return stmt.on_conflict_do_update(
        index_elements=["user_low", "user_high"],
        set_={c: case((newer, stmt.excluded[c]), else_=table[c]) for c in _LATEST},
    )


def latest_date(conn: Connection, user_a: int, user_b: int) -> int | None:
    """The date of the latest message of the room of two users (``None``: they have no room)."""
    low, high = sorted((user_a, user_b))
    query = select(DmRoom.last_date).where(DmRoom.user_low == low, DmRoom.user_high == high)
    return conn.execute(query).scalar()


def latest_rooms(conn: Connection, user_id: int, limit: int = ROOM_LIST_MAX) -> list[MessageDto]:
    """The latest message of each of the user's rooms, newest first (ties: the later stored), with both
    users' current nicknames (joined in the same query); a room with a user who asked to resign is
    left out (that account is gone for everyone)."""
    sender, receiver = aliased(User), aliased(User)
    rows = conn.execute(
        select(DmRoom.last_message_id, sender.nickname, receiver.nickname, DmRoom.last_date, DmRoom.last_text)
        .join(sender, and_(sender.id == DmRoom.last_sender_id, not_resigning(sender)))
        .join(receiver, and_(receiver.id == DmRoom.last_receiver_id, not_resigning(receiver)))
        .where(or_(DmRoom.user_low == user_id, DmRoom.user_high == user_id))
        .order_by(DmRoom.last_date.desc(), DmRoom.last_message_id.desc())
        .limit(limit)
    )
    return [MessageDto(sender=r[1] or "", receiver=r[2] or "", date=int(r[3]), text=r[4]) for r in rows]
