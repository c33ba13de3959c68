"""The per-user rename numbers of the renames queued before messages were keyed by user id.

setProfile used to number each rename in its transaction (``issued``) and queue it on the user's
``NicknameChangeWorkflow``; the activity rewrites the legacy (nickname-keyed) messages only when its
number is above ``applied`` and then raises ``applied``, so a re-delivered start is skipped instead of
renaming back or twice. Renames no longer queue anything (messages name their users by id), so
``issued`` only moves for renames made before that; ``pending_count`` tells the legacy-message
conversion (``dm.migrate_messages``) whether such a rename is still on its way.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import NicknameChangeCounter


def next_change_id(session: Session, user_id: int) -> int:
    """Number the next rename of ``user_id`` (1, 2, …), in the caller's transaction."""
    dialect = session.get_bind().dialect.name
    values = {"user_id": user_id, "issued": 1, "applied": 0}
    bump = {"issued": NicknameChangeCounter.issued + 1}
    if dialect == "mysql":
        session.execute(mysql_insert(NicknameChangeCounter).values(**values).on_duplicate_key_update(**bump))
    else:
        session.execute(
            sqlite_insert(NicknameChangeCounter)
            .values(**values)
            .on_conflict_do_update(index_elements=["user_id"], set_=bump)
        )
    issued = session.scalar(
        select(NicknameChangeCounter.issued).where(NicknameChangeCounter.user_id == user_id)
    )
    assert issued is not None
    return int(issued)


def is_pending(session: Session, user_id: int, change_id: int) -> bool:
    """True when rename ``change_id`` of ``user_id`` has not been applied yet (False once the account is
    gone: nothing is left to rename)."""
    applied = session.scalar(
        select(NicknameChangeCounter.applied).where(NicknameChangeCounter.user_id == user_id)
    )
    return applied is not None and applied < change_id


def mark_applied(session: Session, user_id: int, change_id: int) -> None:
    """Record that renames up to ``change_id`` of ``user_id`` are applied."""
    session.execute(
        update(NicknameChangeCounter)
        .where(NicknameChangeCounter.user_id == user_id, NicknameChangeCounter.applied < change_id)
        .values(applied=change_id)
    )


def pending_count(conn: Session | Connection) -> int:
    """How many users have a numbered rename not applied to the legacy messages yet (renames numbered
    before setProfile stopped queueing them, whose ``NicknameChangeWorkflow`` has not run)."""
    query = select(func.count()).where(NicknameChangeCounter.applied < NicknameChangeCounter.issued)
    return int(conn.scalar(query) or 0)
