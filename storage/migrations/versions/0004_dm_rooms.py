"""the DM room list read model

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dm_rooms",
        sa.Column("user_low", BigId, nullable=False),
        sa.Column("user_high", BigId, nullable=False),
        sa.Column("last_sender_id", sa.BigInteger(), nullable=False),
        sa.Column("last_receiver_id", sa.BigInteger(), nullable=False),
        sa.Column("last_date", sa.BigInteger(), nullable=False),
        sa.Column("last_text", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.Column("last_message_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_low"], ["users.id"], name=op.f("fk_dm_rooms_user_low_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_high"], ["users.id"], name=op.f("fk_dm_rooms_user_high_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_low", "user_high", name=op.f("pk_dm_rooms")),
    )
    with op.batch_alter_table("dm_rooms", schema=None) as batch_op:
        batch_op.create_index("ix_dm_rooms_user_low_last_date", ["user_low", "last_date"], unique=False)
        batch_op.create_index("ix_dm_rooms_user_high_last_date", ["user_high", "last_date"], unique=False)


def downgrade() -> None:
    op.drop_table("dm_rooms")
