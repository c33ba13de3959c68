"""SQLite never hands out a deleted row's id again (INTEGER PRIMARY KEY AUTOINCREMENT)

Revision ID: 0014
Revises: 0013

Without ``AUTOINCREMENT`` SQLite gives a new row max(id) + 1, so the id of the last row deleted comes
back: a new account got the id of the account that had just resigned, and with it that account's
revocation record (403 "signed out or revoked") and its ``resign:<user id>`` workflow id. The tables
whose generated ids are referenced from elsewhere once their row is gone (``storage.models.NO_ID_REUSE``)
are rebuilt with ``AUTOINCREMENT``, and their ``sqlite_sequence`` entry is seeded from the largest id
still known: the table's own, and for ``users`` also the user revocation records (``kind = 'user'``,
whose rows are gone), for ``feeds`` the feed ids of the listing marks. MySQL/MariaDB keep their
AUTO_INCREMENT counter: a no-op there.

The rebuild drops and recreates each table (Alembic's batch mode), which needs ``PRAGMA foreign_keys``
off, as Alembic's own connection has it: with it on, dropping ``users`` would cascade into every table
that refers to it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: Each rebuilt table and the query of ids it must never hand out again beside its own.
TABLES: dict[str, str | None] = {
    "users": "SELECT MAX(CAST(subject AS INTEGER)) FROM revocations WHERE kind = 'user'",
    "revocations": None,
    "device_registrations": None,
    "feeds": "SELECT MAX(feed_id) FROM feed_page_marks",
    "workflow_outbox": None,
}


def _rebuild(autoincrement: bool) -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("revision 0014 rebuilds tables on SQLite: run it with PRAGMA foreign_keys=OFF")
    for table, also_used in TABLES.items():
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
        if not autoincrement:
            continue
        used = [conn.exec_driver_sql(f"SELECT MAX(id) FROM {table}").scalar()]
        if also_used:
            used.append(conn.exec_driver_sql(also_used).scalar())
        seq = max([int(value) for value in used if value is not None], default=0)
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
        conn.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"), {"t": table, "s": seq}
        )


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
