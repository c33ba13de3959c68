"""the workflow-start outbox and the per-user rename sequence

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "workflow_outbox",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_outbox")),
    )
    with op.batch_alter_table("workflow_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_workflow_outbox_user_id_id", ["user_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_workflow_outbox_next_attempt_at"), ["next_attempt_at"], unique=False
        )
    op.create_table(
        "nickname_changes",
        sa.Column("user_id", BigId, nullable=False),
        sa.Column("issued", sa.BigInteger(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_nickname_changes_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_nickname_changes")),
    )


def downgrade() -> None:
    op.drop_table("nickname_changes")
    with op.batch_alter_table("workflow_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workflow_outbox_next_attempt_at"))
        batch_op.drop_index("ix_workflow_outbox_user_id_id")
    op.drop_table("workflow_outbox")
