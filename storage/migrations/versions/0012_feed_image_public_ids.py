"""feed images get a public id apart from their internal id (a capability that can be rotated)

Revision ID: 0012
Revises: 0010

Adds ``feed_images.public_id`` (unique, not null) and gives every existing image a random one in
[2**62, 2**63). Each step looks at the schema before acting and only images still without a public
id get one, so a run that died half-way (MySQL's DDL is not transactional) is simply run again: the
ids already given are kept.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.exc import IntegrityError

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UNIQUE = "uq_feed_images_public_id"
BATCH = 500
images = sa.table("feed_images", sa.column("id", sa.BigInteger()), sa.column("public_id", sa.BigInteger()))


def _public_id() -> int:
    # The same rule as storage.feed_images.new_public_id, frozen here as this revision wrote it.
    return secrets.randbits(62) | 1 << 62


def _has_unique(inspector: sa.Inspector) -> bool:
    names = {u["name"] for u in inspector.get_unique_constraints("feed_images")}
    names |= {i["name"] for i in inspector.get_indexes("feed_images") if i.get("unique")}
    return UNIQUE in names


def _fill(conn: sa.Connection) -> None:
    """A random public id for every image that has none (the unique index is already there, so a
    collision, however unlikely, is retried with another id)."""
    without = sa.select(images.c.id).where(images.c.public_id.is_(None)).order_by(images.c.id).limit(BATCH)
    while ids := conn.execute(without).scalars().all():
        for image_id in ids:
            while True:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            sa.update(images)
                            .where(images.c.id == image_id, images.c.public_id.is_(None))
                            .values(public_id=_public_id())
                        )
                    break
                except IntegrityError:
                    continue


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    columns = {c["name"]: c for c in inspector.get_columns("feed_images")}
    if "public_id" not in columns:
        with op.batch_alter_table("feed_images", schema=None) as batch_op:
            batch_op.add_column(sa.Column("public_id", sa.BigInteger(), nullable=True))
        inspector = sa.inspect(conn)
    if not _has_unique(inspector):
        with op.batch_alter_table("feed_images", schema=None) as batch_op:
            batch_op.create_unique_constraint(UNIQUE, ["public_id"])
    _fill(conn)
    if "public_id" not in columns or columns["public_id"]["nullable"]:
        with op.batch_alter_table("feed_images", schema=None) as batch_op:
            batch_op.alter_column("public_id", existing_type=sa.BigInteger(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("feed_images", schema=None) as batch_op:
        batch_op.drop_constraint(UNIQUE, type_="unique")
        batch_op.drop_column("public_id")
