"""users get a unique look-alike key of their nickname, so no two users hold nicknames that look alike

Revision ID: 0013
Revises: 0012

Adds ``users.nickname_skeleton`` (``accounts.nicknames.nickname_skeleton`` of the nickname, unique,
NULL allowed) and fills it. Users whose nicknames already look alike (``alice`` and ``Alice``) keep
their nicknames; the key goes to the earliest of them (lowest user id) and the others keep NULL, so
their nicknames work as before but nobody else can claim a look-alike of the earliest one. Each such
group is logged (``event: nickname_look_alike``, user ids only). Rows without a valid nickname (the
sign-up placeholder, rows 0007 left alone) get no key. Each step looks at the schema first and a key
already given is kept, so a run that died half-way (MySQL's DDL is not transactional) is run again.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from accounts.nicknames import nickname_key, nickname_skeleton

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.migrations.nickname_skeletons")
UNIQUE = "uq_users_nickname_skeleton"
SKELETON_TYPE = sa.String(length=255).with_variant(
    mysql.VARCHAR(length=255, collation="utf8mb4_bin"), "mysql"
)
users = sa.table(
    "users",
    sa.column("id", sa.BigInteger()),
    sa.column("nickname", sa.String()),
    sa.column("nickname_skeleton", sa.String()),
)


def _has_unique(inspector: sa.Inspector) -> bool:
    names = {u["name"] for u in inspector.get_unique_constraints("users")}
    names |= {i["name"] for i in inspector.get_indexes("users") if i.get("unique")}
    return UNIQUE in names


def _fill(conn: sa.Connection) -> None:
    """Give each look-alike key to one user: the one that already holds it (a re-run), else the earliest."""
    query = (
        sa.select(users.c.id, users.c.nickname, users.c.nickname_skeleton)
        .where(users.c.nickname.is_not(None))
        .order_by(users.c.id)
    )
    groups: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    unkeyed = 0
    for user_id, nickname, stored in conn.execute(query):
        canonical = nickname_key(nickname)
        if canonical is None or canonical != nickname:
            unkeyed += 1  # the placeholder, or a row 0007 could not normalise: no nickname to key
            continue
        groups[nickname_skeleton(canonical)].append((int(user_id), stored))
    filled = collisions = 0
    for skeleton, members in groups.items():  # in order of their first user id
        ids = [user_id for user_id, _ in members]
        holder = next((user_id for user_id, stored in members if stored == skeleton), ids[0])
        if len(members) > 1:
            collisions += 1
            log.warning(
                "users %s: nicknames look alike (one look-alike key), held by user %s; the others keep "
                "their nicknames without the key",
                ", ".join(map(str, ids)),
                holder,
                extra={"event": "nickname_look_alike", "user_ids": ids, "owner": holder},
            )
        if dict(members)[holder] != skeleton:
            conn.execute(sa.update(users).where(users.c.id == holder).values(nickname_skeleton=skeleton))
            filled += 1
    log.info(
        "nickname look-alike keys given: %d (%d look-alike groups, %d rows without a valid nickname)",
        filled,
        collisions,
        unkeyed,
        extra={
            "event": "nickname_skeletons_filled",
            "filled": filled,
            "look_alike_groups": collisions,
            "unkeyed": unkeyed,
        },
    )


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    if "nickname_skeleton" not in {c["name"] for c in inspector.get_columns("users")}:
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.add_column(sa.Column("nickname_skeleton", SKELETON_TYPE, nullable=True))
        inspector = sa.inspect(conn)
    if not _has_unique(inspector):
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.create_unique_constraint(UNIQUE, ["nickname_skeleton"])
    _fill(conn)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(UNIQUE, type_="unique")
        batch_op.drop_column("nickname_skeleton")
