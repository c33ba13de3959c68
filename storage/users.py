"""Users and blocks: look-ups by id and nickname, the sign-in upsert (provider binding), block lists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, or_, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts.nicknames import nickname_skeletons
from storage.logins import utcnow
from storage.models import Block, User


def by_id(session: Session, user_id: int) -> User | None:
    """The user with ``user_id``."""
    return session.get(User, user_id)


def by_id_locked(session: Session, user_id: int) -> User | None:
    """The user with ``user_id``, its row locked until the transaction ends (MySQL; SQLite serialises
    writers), so two changes of one account apply one after the other and each reads the other's result."""
    return session.get(User, user_id, with_for_update=True, populate_existing=True)


def by_nickname(session: Session, nickname: str) -> User | None:
    """The user with exactly this nickname."""
    return session.scalars(select(User).where(User.nickname == nickname)).one_or_none()


def nickname_of(conn: Session | Connection, user_id: int) -> str | None:
    """The nickname of ``user_id`` (``None`` before the profile is set, or for an unknown id)."""
    return conn.scalar(select(User.nickname).where(User.id == user_id))


def id_of(conn: Session | Connection, nickname: str) -> int | None:
    """The id of the user with exactly this nickname."""
    return conn.scalar(select(User.id).where(User.nickname == nickname))


def active_id_of(conn: Session | Connection, nickname: str) -> int | None:
    """The id of the user with exactly this nickname, unless that account asked to resign (its
    content is gone for everyone from the request on, though its rows wait for ``ResignWorkflow``)."""
    return conn.scalar(select(User.id).where(User.nickname == nickname, not_resigning()))


def nickname_taken(conn: Session | Connection, nickname: str, user_id: int) -> bool:
    """Whether ``user_id`` may not take the canonical ``nickname``: another user has it, or has one that
    looks alike (either of ``nickname_skeletons`` is theirs). The user's own current nickname is never
    taken, even when an earlier user holds a key of it (revision 0013 left both nicknames working)."""
    if nickname_of(conn, user_id) == nickname:
        return False
    keys = nickname_skeletons(nickname)
    holders = select(User.id).where(
        or_(
            User.nickname == nickname,
            User.nickname_folded_skeleton == keys.folded,
            User.nickname_cased_skeleton == keys.cased,
        ),
        User.id != user_id,
    )
    return conn.execute(holders.limit(1)).first() is not None


def set_nickname(user: User, nickname: str) -> None:
    """Give ``user`` the canonical ``nickname`` and its look-alike keys (the caller checked
    ``nickname_taken``; the unique keys refuse a concurrent claim at flush with ``IntegrityError``).
    Sending the current nickname again changes nothing: a user left without a key keeps it so."""
    if user.nickname != nickname:
        keys = nickname_skeletons(nickname)
        user.nickname = nickname
        user.nickname_folded_skeleton, user.nickname_cased_skeleton = keys.folded, keys.cased


def ids_by_nicknames(session: Session, names: Iterable[str]) -> dict[str, int]:
    """``nickname -> user id`` for the given nicknames that exist."""
    wanted = list(set(names))
    if not wanted:
        return {}
    rows = session.execute(select(User.nickname, User.id).where(User.nickname.in_(wanted)))
    return {str(name): int(uid) for name, uid in rows}


def current_nicknames(
    conn: Session | Connection, *, ids: Iterable[int] = (), nicknames: Iterable[str] = ()
) -> dict[int, str | None]:
    """``user id -> current nickname`` of the users with any of ``ids`` or of ``nicknames`` (exact
    match), in one query; ids and nicknames that name nobody are left out."""
    wanted_ids, wanted_names = list(set(ids)), list(set(nicknames))
    if not wanted_ids and not wanted_names:
        return {}
    rows = conn.execute(
        select(User.id, User.nickname).where(or_(User.id.in_(wanted_ids), User.nickname.in_(wanted_names)))
    )
    return {int(uid): name for uid, name in rows}


#: What a resigning account's ``account_email`` becomes at the resign request (``release_sign_in_key``).
#: No submitted e-mail can equal it: ``accounts.emails.validated_email`` requires ``local@domain``.
RESIGNING_PREFIX = "resigning:"


def release_sign_in_key(user: User) -> None:
    """Free ``user``'s e-mail for a new account at once (the caller holds the row lock and revokes every
    login in the same transaction): a sign-in during the resign opens a fresh account, which the
    resign, working by user id, leaves alone. The row keeps its nickname, and its Apple token for the
    resign's Apple step, until ``ResignWorkflow`` deletes it."""
    user.account_email = f"{RESIGNING_PREFIX}{user.id}"
    user.updated_at = utcnow()


#: What an operator sets a resigning account's ``account_email`` to (this plus its id, README "Resign
#: runbook") to hold its resign: still resigning (hidden, its e-mail free), but housekeeping no longer
#: starts a stopped resign of it again.
RESIGN_HELD_PREFIX = f"{RESIGNING_PREFIX}held:"


def resigning_accounts(conn: Session | Connection, after_id: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` accounts still resigning and not held, by id from past ``after_id``: their ids
    and providers (``ResignWorkflow``'s input)."""
    rows = conn.execute(
        select(User.id, User.provider)
        .where(
            User.id > after_id,
            User.account_email.startswith(RESIGNING_PREFIX, autoescape=True),
            ~User.account_email.startswith(RESIGN_HELD_PREFIX, autoescape=True),
        )
        .order_by(User.id)
        .limit(limit)
    )
    return [(int(user_id), provider) for user_id, provider in rows]


def is_resigning(user: User) -> bool:
    """Whether ``user`` was asked to resign (its row is there until ``ResignWorkflow`` deletes it)."""
    return user.account_email.startswith(RESIGNING_PREFIX)


def not_resigning(user: Any = User) -> ColumnElement[bool]:
    """SQL for ``not is_resigning`` of ``user`` (the ``User`` entity or an alias of it)."""
    return ~user.account_email.startswith(RESIGNING_PREFIX, autoescape=True)


def active_nickname(conn: Session | Connection, user_id: int) -> str | None:
    """The nickname of ``user_id`` while the account is there and not resigning, else ``None`` (also
    before the profile is set)."""
    return conn.scalar(select(User.nickname).where(User.id == user_id, not_resigning()))


class ProviderMismatch(Exception):
    """The account is bound to another provider identity than the one presented; nothing was changed."""


def upsert_account(
    session: Session,
    account_email: str,
    provider: str,
    provider_id: str | None,
    apple_refresh_token: str | None,
) -> User:
    """The account ``account_email``, created or bound to ``provider_id`` (``None``: a placeholder).

    An account is bound to the first real provider id it sees and refused for any other
    (``ProviderMismatch``, nothing written); a placeholder opens only an account that is still unbound.
    The Apple refresh token is stored only for the bound identity. Safe under concurrent sign-ins of
    one account: the row is created if missing, then locked before it is read and decided on.
    """
    now = utcnow()
    values = {
        "account_email": account_email,
        "provider": provider,
        "provider_id": provider_id,
        "introduction": "",
        "apple_refresh_token": apple_refresh_token if provider_id is not None else None,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    if dialect == "mysql":
        # A no-op on an existing row, which it leaves locked: concurrent creators queue behind it.
        session.execute(mysql_insert(User).values(**values).on_duplicate_key_update(id=User.id))
    elif dialect == "sqlite":
        session.execute(
            sqlite_insert(User).values(**values).on_conflict_do_nothing(index_elements=["account_email"])
        )
    else:  # pragma: no cover - other dialects: plain insert, kept on conflict
        try:
            with session.begin_nested():
                session.add(User(**values))
        except IntegrityError:
            pass
    user = session.scalars(
        select(User)
        .where(User.account_email == account_email)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    if user.provider_id is None and provider_id is not None:
        user.provider_id = provider_id  # the first real identity binds the account
    elif user.provider_id != provider_id:
        raise ProviderMismatch(f"the account is bound to another {provider} identity")
    if (
        apple_refresh_token is not None
        and provider_id is not None
        and user.apple_refresh_token != apple_refresh_token
    ):
        user.apple_refresh_token = apple_refresh_token
    if session.is_modified(user):
        user.updated_at = now
    session.flush()
    return user


def blocked_ids(session: Session, blocker_id: int) -> set[int]:
    """Ids of the users ``blocker_id`` has blocked."""
    return set(session.scalars(select(Block.blocked_id).where(Block.blocker_id == blocker_id)))


def is_blocked(conn: Session | Connection, blocker_id: int, blocked_id: int) -> bool:
    """True when ``blocker_id`` has blocked ``blocked_id``."""
    query = select(Block.blocker_id).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
    return conn.execute(query).first() is not None


def block(session: Session, blocker_id: int, blocked_id: int) -> None:
    """Record the block (idempotent: one already there, or recorded first by a concurrent request,
    stays). One statement and no savepoint: when concurrent blocks and unblocks of the pair deadlock,
    InnoDB rolls back the whole transaction, savepoints included, and the deadlock must reach
    ``storage.db.retry_deadlocks`` as itself, not as the failed rollback to a savepoint that is gone."""
    values = {"blocker_id": blocker_id, "blocked_id": blocked_id, "created_at": utcnow()}
    if session.get_bind().dialect.name == "mysql":
        keep = mysql_insert(Block).values(**values).on_duplicate_key_update(blocker_id=Block.blocker_id)
        session.execute(keep)
    else:  # SQLite: its writers are serialised
        session.execute(sqlite_insert(Block).values(**values).on_conflict_do_nothing())


def unblock(session: Session, blocker_id: int, blocked_id: int) -> None:
    """Remove the block if present."""
    session.execute(delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id))
