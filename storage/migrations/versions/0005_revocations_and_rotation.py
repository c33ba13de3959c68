"""grace window of refresh rotation (login_sessions.rotated_at) and durable revocation records

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: Logins revoked this recently get a record, so replicas seeding from the table know them (longer
#: than any access token lives: the default refresh-token lifetime).
BACKFILL_WINDOW = timedelta(days=14)


def upgrade() -> None:
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotated_at", sa.DateTime(), nullable=True))
    op.create_table(
        "revocations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=36), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocations_revoked_at"), ["revoked_at"], unique=False)
    cutoff = datetime.now(UTC).replace(tzinfo=None) - BACKFILL_WINDOW
    op.get_bind().execute(
        sa.text(
            "INSERT INTO revocations (kind, subject, revoked_at) "
            "SELECT 'session', id, revoked_at FROM login_sessions "
            "WHERE revoked_at IS NOT NULL AND revoked_at > :cutoff"
        ),
        {"cutoff": cutoff},
    )


def downgrade() -> None:
    op.drop_table("revocations")
    with op.batch_alter_table("login_sessions", schema=None) as batch_op:
        batch_op.drop_column("rotated_at")
