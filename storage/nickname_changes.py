"""The per-user rename sequence that makes re-delivered renames harmless.

setProfile numbers each rename in its transaction (``issued``); the activity that rewrites the Mongo
messages applies a rename only when its number is above ``applied`` and then raises ``applied``. A rename
whose start is retried after it already went through (a queued start retried by the outbox drainer, a
new workflow run) is then skipped instead of renaming back or twice.
"""

from __future__ import annotations

from sqlalchemy import select, update
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
