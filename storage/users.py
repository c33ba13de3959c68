"""Users and blocks: look-ups by id, account e-mail and nickname; the sign-in upsert; block lists."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.logins import utcnow
from storage.models import Block, User


def by_id(session: Session, user_id: int) -> User | None:
    """The user with ``user_id``."""
    return session.get(User, user_id)


def by_id_locked(session: Session, user_id: int) -> User | None:
    """The user with ``user_id``, its row locked until the transaction ends (MySQL; SQLite serialises
    writers), so two changes of one account apply one after the other and each reads the other's result."""
    return session.get(User, user_id, with_for_update=True, populate_existing=True)


def by_account(session: Session, account_email: str) -> User | None:
    """The user whose account id (``<email>+<provider>``) is ``account_email``."""
    return session.scalars(select(User).where(User.account_email == account_email)).one_or_none()


def by_nickname(session: Session, nickname: str) -> User | None:
    """The user with exactly this nickname."""
    return session.scalars(select(User).where(User.nickname == nickname)).one_or_none()


def nickname_of(conn: Session | Connection, user_id: int) -> str | None:
    """The nickname of ``user_id`` (``None`` before the profile is set, or for an unknown id)."""
    return conn.scalar(select(User.nickname).where(User.id == user_id))


def id_of(conn: Session | Connection, nickname: str) -> int | None:
    """The id of the user with exactly this nickname."""
    return conn.scalar(select(User.id).where(User.nickname == nickname))


def ids_by_nicknames(session: Session, names: Iterable[str]) -> dict[str, int]:
    """``nickname -> user id`` for the given nicknames that exist."""
    wanted = list(set(names))
    if not wanted:
        return {}
    rows = session.execute(select(User.nickname, User.id).where(User.nickname.in_(wanted)))
    return {str(name): int(uid) for name, uid in rows}


def upsert_account(
    session: Session, account_email: str, provider: str, provider_id: str, apple_refresh_token: str | None
) -> User:
    """Create the account or refresh its provider data; safe under concurrent sign-ins of one account."""
    now = utcnow()
    values = {
        "account_email": account_email,
        "provider": provider,
        "provider_id": provider_id,
        "introduction": "",
        "apple_refresh_token": apple_refresh_token,
        "created_at": now,
        "updated_at": now,
    }
    changes = {"provider_id": provider_id, "updated_at": now}
    if apple_refresh_token is not None:
        changes["apple_refresh_token"] = apple_refresh_token
    dialect = session.get_bind().dialect.name
    if dialect == "mysql":
        session.execute(mysql_insert(User).values(**values).on_duplicate_key_update(**changes))
    elif dialect == "sqlite":
        session.execute(
            sqlite_insert(User)
            .values(**values)
            .on_conflict_do_update(index_elements=["account_email"], set_=changes)
        )
    else:  # pragma: no cover - other dialects: plain insert, update on conflict
        try:
            with session.begin_nested():
                session.add(User(**values))
        except IntegrityError:
            pass
    user = by_account(session, account_email)
    assert user is not None
    session.refresh(user)
    return user


def blocked_ids(session: Session, blocker_id: int) -> set[int]:
    """Ids of the users ``blocker_id`` has blocked."""
    return set(session.scalars(select(Block.blocked_id).where(Block.blocker_id == blocker_id)))


def is_blocked(conn: Session | Connection, blocker_id: int, blocked_id: int) -> bool:
    """True when ``blocker_id`` has blocked ``blocked_id``."""
    query = select(Block.blocker_id).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
    return conn.execute(query).first() is not None


def block(session: Session, blocker_id: int, blocked_id: int) -> None:
    """Record the block (idempotent)."""
    if not is_blocked(session, blocker_id, blocked_id):
        try:
            with session.begin_nested():
                session.add(Block(blocker_id=blocker_id, blocked_id=blocked_id, created_at=utcnow()))
        except IntegrityError:
            pass  # a concurrent identical block won


def unblock(session: Session, blocker_id: int, blocked_id: int) -> None:
    """Remove the block if present."""
    session.execute(delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id))
