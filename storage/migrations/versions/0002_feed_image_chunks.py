"""feed image bytes in chunks, random image ids

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Image bytes move out of the metadata row into 1 MiB chunks; ids are chosen by the application
    # (random, unguessable), so the column stops auto-incrementing. No images existed before this.
    with op.batch_alter_table("feed_images", schema=None) as batch_op:
        batch_op.drop_column("data")
        if op.get_context().dialect.name == "mysql":
            batch_op.alter_column("id", existing_type=sa.BigInteger(), autoincrement=False)
    op.create_table(
        "feed_image_chunks",
        sa.Column("image_id", BigId, autoincrement=False, nullable=False),
        sa.Column("seq", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["feed_images.id"],
            name=op.f("fk_feed_image_chunks_image_id_feed_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "seq", name=op.f("pk_feed_image_chunks")),
    )


def downgrade() -> None:
    op.drop_table("feed_image_chunks")
    with op.batch_alter_table("feed_images", schema=None) as batch_op:
        # Bytes of images stored since 0002 are not moved back; the column comes back empty.
        batch_op.add_column(
            sa.Column("data", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql"), nullable=True)
        )
