"""device registration tokens compare exactly (``utf8mb4_bin``) on MySQL

Revision ID: 0016
Revises: 0015

``device_registrations.token`` had the table's collation (``utf8mb4_unicode_ci`` or ``general_ci``), so
a lookup by token matched case variants and variants with ignorable characters: a sign-in carrying a
variant of another account's FCM token took that account's row (keeping the other phone's token), and a
token FCM called dead removed its variants too. FCM tokens are case-sensitive, so the column now compares
exactly, as ``users.account_email`` and ``users.nickname`` do. ``utf8mb4_bin`` pads with spaces like the
old collations; tokens are stripped before they are stored or looked up, so that changes nothing.

No data changes: the old unique index already refused two rows that differ only in case or ignorable
characters, so no such pair can exist to be resolved. SQLite compares exactly already: nothing to do
there. The column's collation is read first, so a run that died half-way (MySQL's DDL is not
transactional) is simply run again.

Going down, the table's collation is back and its unique index would refuse tokens that are now apart but
equal under it: of each such group the earliest registration (lowest id) is kept, the others are deleted
(those devices get pushes again at their next sign-in) and their ids are logged.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

TABLE = "device_registrations"
EXACT = "utf8mb4_bin"
registrations = sa.table(TABLE, sa.column("id", sa.BigInteger()), sa.column("token", sa.String()))


def _token_collation(conn: sa.Connection) -> str:
    query = sa.text(
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table AND COLUMN_NAME = 'token'"
    )
    return str(conn.execute(query, {"table": TABLE}).scalar_one())


def _table_collation(conn: sa.Connection) -> str:
    query = sa.text(
        "SELECT TABLE_COLLATION FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
    )
    return str(conn.execute(query, {"table": TABLE}).scalar_one())


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "mysql" or _token_collation(conn) == EXACT:
        return
    op.alter_column(
        TABLE,
        "token",
        existing_type=sa.String(length=512),
        type_=mysql.VARCHAR(length=512, collation=EXACT),
        existing_nullable=False,
    )


def _drop_tokens_equal_under(conn: sa.Connection, collation: str) -> None:
    """Keep the earliest of each group of tokens equal under ``collation`` (the table's), delete the rest."""
    token = registrations.c.token.collate(collation)
    groups = conn.execute(
        sa.select(sa.func.min(registrations.c.id).label("kept")).group_by(token).having(sa.func.count() > 1)
    ).scalars()
    for kept in list(groups):
        kept_token = conn.execute(
            sa.select(registrations.c.token).where(registrations.c.id == kept)
        ).scalar_one()
        doomed = sa.select(registrations.c.id).where(token == kept_token, registrations.c.id != kept)
        ids = list(conn.execute(doomed).scalars())
        conn.execute(registrations.delete().where(registrations.c.id.in_(ids)))
        log.warning("device registrations %s deleted: their tokens equal registration %s's", ids, kept)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "mysql" or _token_collation(conn) != EXACT:
        return
    collation = _table_collation(conn)
    _drop_tokens_equal_under(conn, collation)
    op.alter_column(
        TABLE,
        "token",
        existing_type=mysql.VARCHAR(length=512, collation=EXACT),
        type_=sa.String(length=512),
        existing_nullable=False,
    )
