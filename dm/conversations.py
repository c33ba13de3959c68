"""Reading DM history for a caller: which room two nicknames name *now*, whether the caller is in it
(by user id), and its pages and the caller's room list with the users' current nicknames.

Nicknames are looked up once per request (one query for the caller and both names), never per message:
a page holds messages of two users only, and the room list joins the nicknames in its own query.

A user who asked to resign is gone for everyone from that request on (README "Resign"), though their
row waits for ``ResignWorkflow``: their nickname names nobody here (``active_nicknames``), so their
rooms leave the room list and their conversations read as empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from dm import rooms
from dm.messages import MessageDto, MessageStore
from storage import users
from storage.models import User


class NoNickname(Exception):
    """The caller has not set a nickname yet, so takes part in no conversation."""


class NotAParticipant(Exception):
    """The caller is not one of the users the request names."""


@dataclass(frozen=True)
class Room:
    """The caller and the other user of a conversation (``other_id`` ``None``: that nickname names
    nobody now, so there is nothing to read), with their current nicknames."""

    caller_id: int
    other_id: int | None
    nicknames: dict[int, str]


def active_nicknames(
    conn: Connection, *, ids: Iterable[int] = (), nicknames: Iterable[str] = ()
) -> dict[int, str | None]:
    """``storage.users.current_nicknames`` without the accounts that asked to resign: ``user id ->
    current nickname`` of the others holding any of ``ids`` or ``nicknames``, in one query."""
    wanted = or_(User.id.in_(set(ids)), User.nickname.in_(set(nicknames)))
    rows = conn.execute(select(User.id, User.nickname).where(wanted, users.not_resigning()))
    return {int(uid): name for uid, name in rows}


def room_of(conn: Connection, caller_id: int, sender: str, receiver: str) -> Room:
    """The room of ``sender`` and ``receiver`` (canonical nicknames, resolved to the users holding them
    now) for ``caller_id``, who must hold one of them: ``NoNickname`` / ``NotAParticipant`` otherwise."""
    found = active_nicknames(conn, ids=[caller_id], nicknames=[sender, receiver])
    own = found.get(caller_id)
    if own is None:
        raise NoNickname
    if own not in (sender, receiver):
        raise NotAParticipant
    other_name = receiver if own == sender else sender
    other_id = next((uid for uid, name in found.items() if name == other_name), None)
    nicknames = {
        uid: name for uid, name in found.items() if name is not None and uid in (caller_id, other_id)
    }
    return Room(caller_id, other_id, nicknames)


def committed_before(conn: Connection, room: Room, boundary: int) -> int:
    """``boundary``, lowered to just past the latest message of the room's row in the room list: a
    message whose SQL side never committed (its replica died between the two writes,
    ``dm.writes.store_message``) is not shown, so the history and the room list agree (no room row:
    nothing committed, 0)."""
    if room.other_id is None:
        return 0
    last = rooms.latest_date(conn, room.caller_id, room.other_id)
    return min(boundary, last + 1) if last is not None else 0


def page(messages: MessageStore, room: Room, before: int, limit: int) -> list[MessageDto]:
    """The newest ``limit`` messages of ``room`` dated before ``before``, oldest first."""
    if room.other_id is None or before <= 0:
        return []
    found = messages.room_page(room.caller_id, room.other_id, before=before, limit=limit)
    return [m.dto(room.nicknames) for m in found]


def room_list(conn: Connection, caller_id: int, sender: str) -> list[MessageDto]:
    """The latest message of each of the caller's rooms with a user not resigning, newest first;
    ``sender`` must be the caller's current nickname (``NoNickname`` / ``NotAParticipant`` otherwise)."""
    own = users.active_nickname(conn, caller_id)
    if own is None:
        raise NoNickname
    if own != sender:
        raise NotAParticipant
    return rooms.latest_rooms(conn, caller_id)
