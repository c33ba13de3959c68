"""Direct messages made and read directly in the session's stores, by the users holding nicknames now."""

from __future__ import annotations

from typing import Any

from activities.deps import ActivityDeps
from dm import rooms
from dm.messages import Party, StoredMessage
from storage import users


def party(deps: ActivityDeps, nickname: str) -> Party:
    """The user holding ``nickname`` now, as a message side."""
    with deps.engine.connect() as conn:
        user_id = users.id_of(conn, nickname)
    assert user_id is not None, f"nobody holds {nickname!r}"
    return Party(user_id, nickname)


def store_message(deps: ActivityDeps, sender: str, receiver: str, date: int, text: str) -> StoredMessage:
    """Store one message as the DM hub does with an accepted frame: in MongoDB, then in the room list."""
    a, b = party(deps, sender), party(deps, receiver)
    with deps.engine.begin() as conn:
        stored = deps.messages.insert(a, b, date, text)
        rooms.record_message(conn, a.id, b.id, stored)
    return stored


def room_page(deps: ActivityDeps, a: str, b: str, limit: int = 100) -> list[dict[str, Any]]:
    """The room of the users holding ``a`` and ``b`` now, oldest first, as the client sees it."""
    first, second = party(deps, a), party(deps, b)
    found = deps.messages.room_page(first.id, second.id, before=10**17, limit=limit)
    names = {first.id: first.nickname, second.id: second.nickname}
    return [m.dto(names).model_dump() for m in found]
