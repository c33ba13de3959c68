"""which API replica holds DM sockets of which user

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dm_presence",
        sa.Column("replica_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sockets", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_dm_presence_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("replica_id", "user_id", name=op.f("pk_dm_presence")),
    )
    with op.batch_alter_table("dm_presence", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dm_presence_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    # The table takes its index along: dropped first, the index would be refused on MySQL (error 1553,
    # the foreign key on user_id needs it).
    op.drop_table("dm_presence")
