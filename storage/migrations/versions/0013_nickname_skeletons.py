"""users get unique look-alike keys of their nickname, so no two users hold nicknames that look alike

Revision ID: 0013
Revises: 0012

Adds ``users.nickname_folded_skeleton`` and ``users.nickname_cased_skeleton`` (the two keys of
``accounts.nicknames.nickname_skeletons``, each unique, NULL allowed) and fills them. Users whose
nicknames already share a key (``alice`` and ``Alice``) keep their nicknames; each key goes to the
earliest of them (lowest user id) and the others keep NULL there, so their nicknames work as before but
nobody else can claim a look-alike of the earliest one. Each such group is logged (``event:
nickname_look_alike``, the key's name and user ids only). Rows without a valid nickname (the sign-up
placeholder, rows 0007 left alone) get no key. Each step looks at the schema first and a key already
given is kept, so a run that died half-way (MySQL's DDL is not transactional) is simply run again.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from accounts.nicknames import nickname_key, nickname_skeletons

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

log = logging.getLogger("storage.migrations.nickname_skeletons")
#: Each key (``NicknameSkeletons`` field) and its column.
COLUMNS = {"folded": "nickname_folded_skeleton", "cased": "nickname_cased_skeleton"}
SKELETON_TYPE = sa.String(length=255).with_variant(
    mysql.VARCHAR(length=255, collation="utf8mb4_bin"), "mysql"
)
users = sa.table(
    "users",
    sa.column("id", sa.BigInteger()),
    sa.column("nickname", sa.String()),
    *(sa.column(column, sa.String()) for column in COLUMNS.values()),
)


def _unique(column: str) -> str:
    return f"uq_users_{column}"


def _uniques(inspector: sa.Inspector) -> set[str | None]:
    names = {u["name"] for u in inspector.get_unique_constraints("users")}
    return names | {i["name"] for i in inspector.get_indexes("users") if i.get("unique")}


def _fill(conn: sa.Connection) -> None:
    """Give each look-alike key to one user: the one that already holds it (a re-run), else the earliest."""
    query = (
        sa.select(users.c.id, users.c.nickname, *(users.c[column] for column in COLUMNS.values()))
        .where(users.c.nickname.is_not(None))
        .order_by(users.c.id)
    )
    groups: dict[str, dict[str, list[tuple[int, str | None]]]] = {key: defaultdict(list) for key in COLUMNS}
    unkeyed = 0
    for row in conn.execute(query).mappings():
        canonical = nickname_key(row["nickname"])
        if canonical is None or canonical != row["nickname"]:
            unkeyed += 1  # the placeholder, or a row 0007 could not normalise: no nickname to key
            continue
        keys = nickname_skeletons(canonical)._asdict()
        for key, column in COLUMNS.items():
            groups[key][keys[key]].append((int(row["id"]), row[column]))
    filled = collisions = 0
    for key, column in COLUMNS.items():
        for skeleton, members in groups[key].items():  # in order of their first user id
            ids = [user_id for user_id, _ in members]
            holder = next((user_id for user_id, stored in members if stored == skeleton), ids[0])
            if len(members) > 1:
                collisions += 1
                log.warning(
                    "users %s: nicknames look alike (one %s look-alike key), held by user %s; the others "
                    "keep their nicknames without it",
                    ", ".join(map(str, ids)),
                    key,
                    holder,
                    extra={"event": "nickname_look_alike", "key": key, "user_ids": ids, "owner": holder},
                )
            if dict(members)[holder] != skeleton:
                conn.execute(sa.update(users).where(users.c.id == holder).values({column: skeleton}))
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
    for column in COLUMNS.values():
        inspector = sa.inspect(conn)
        if column not in {c["name"] for c in inspector.get_columns("users")}:
            with op.batch_alter_table("users", schema=None) as batch_op:
                batch_op.add_column(sa.Column(column, SKELETON_TYPE, nullable=True))
            inspector = sa.inspect(conn)
        if _unique(column) not in _uniques(inspector):
            with op.batch_alter_table("users", schema=None) as batch_op:
                batch_op.create_unique_constraint(_unique(column), [column])
    _fill(conn)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in reversed(COLUMNS.values()):
            batch_op.drop_constraint(_unique(column), type_="unique")
            batch_op.drop_column(column)
