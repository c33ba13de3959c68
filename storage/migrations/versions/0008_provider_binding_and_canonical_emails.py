"""accounts bound to provider identities, canonical account e-mails, hashed authorize codes

Revision ID: 0008
Revises: 0007

- ``users.provider_id`` becomes nullable: NULL is an account not bound to any identity yet. Rows that
  hold the client's placeholders (``0``, ``unknownId``) become NULL, so the first real id binds them.
- ``users.account_email`` takes its canonical form (NFC, lower case; ``accounts.emails``) where that
  collides with no other row, and compares exactly on MySQL (``utf8mb4_bin``), as Python does.
  Accounts whose e-mail holds a control character were left by a bug (their sign-in never answered,
  so nobody ever held their tokens or set their profile) and are removed when they have no nickname.
- ``authorize_codes.code`` holds the SHA-256 hex of the code instead of the code.

The rules are copied here, not imported, so this revision keeps doing what it did when the code moves on.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

PLACEHOLDER_PROVIDER_IDS = ("0", "unknownId")

users = sa.table(
    "users",
    sa.column("id", sa.BigInteger),
    sa.column("account_email", sa.String),
    sa.column("provider_id", sa.String),
    sa.column("nickname", sa.String),
)
codes = sa.table("authorize_codes", sa.column("code", sa.String))


def _canonical(account_email: str) -> str:
    return unicodedata.normalize("NFC", account_email).lower()


def _has_control_character(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("provider_id", existing_type=sa.String(length=255), nullable=True)
        if bind.dialect.name == "mysql":
            batch_op.alter_column(
                "account_email",
                existing_type=sa.String(length=320),
                type_=mysql.VARCHAR(length=320, collation="utf8mb4_bin"),
                existing_nullable=False,
            )
    op.execute(
        users.update().where(users.c.provider_id.in_(PLACEHOLDER_PROVIDER_IDS)).values(provider_id=None)
    )

    rows = bind.execute(sa.select(users.c.id, users.c.account_email, users.c.nickname)).all()
    junk = [row.id for row in rows if _has_control_character(row.account_email) and row.nickname is None]
    if junk:
        # Explicitly: SQLite enforces no ON DELETE CASCADE on the migration's connection.
        for child in ("device_registrations", "login_sessions"):
            op.execute(sa.table(child, sa.column("user_id")).delete().where(sa.column("user_id").in_(junk)))
        op.execute(users.delete().where(users.c.id.in_(junk)))
    by_canonical: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for row in rows:
        if row.id not in junk:
            by_canonical[_canonical(row.account_email)].append((row.id, row.account_email))
    for canonical, group in by_canonical.items():
        if len(group) > 1:
            # Two accounts differ only in case (possible on SQLite): both stay as they are.
            log.warning(
                "account e-mail of users %s not made canonical: they would collide", [i for i, _ in group]
            )
            continue
        [(user_id, stored)] = group
        if stored != canonical:
            bind.execute(users.update().where(users.c.id == user_id).values(account_email=canonical))

    for (code,) in bind.execute(sa.select(codes.c.code)).all():
        hashed = hashlib.sha256(code.encode()).hexdigest()
        bind.execute(codes.update().where(codes.c.code == code).values(code=hashed))


def downgrade() -> None:
    # Hashed codes cannot be turned back (they expire within minutes anyway); e-mails stay canonical.
    op.execute(codes.delete())
    op.execute(users.update().where(users.c.provider_id.is_(None)).values(provider_id="0"))
    bind = op.get_bind()
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("provider_id", existing_type=sa.String(length=255), nullable=False)
        if bind.dialect.name == "mysql":
            batch_op.alter_column(
                "account_email",
                existing_type=mysql.VARCHAR(length=320, collation="utf8mb4_bin"),
                type_=sa.String(length=320),
                existing_nullable=False,
            )
