"""feed page marks: where each page of a listing ended for a login, so the next page seeks, not counts

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_page_marks",
        sa.Column("login_id", sa.String(length=36), nullable=False),
        sa.Column("listing", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("page", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("date", sa.BigInteger(), nullable=False),
        sa.Column("feed_id", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("login_id", "listing", "scope", "page", name=op.f("pk_feed_page_marks")),
    )
    with op.batch_alter_table("feed_page_marks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_feed_page_marks_recorded_at"), ["recorded_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("feed_page_marks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feed_page_marks_recorded_at"))
    op.drop_table("feed_page_marks")
