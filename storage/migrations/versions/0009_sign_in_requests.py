"""short-lived sign-in requests: what SignInWorkflow reads by id instead of carrying in its history

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

AccountText = sa.String(320).with_variant(mysql.VARCHAR(320, collation="utf8mb4_bin"), "mysql")


def upgrade() -> None:
    op.create_table(
        "sign_in_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("email", AccountText, nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("provider_id", sa.String(length=255), nullable=False),
        sa.Column("device_token", sa.Text(), nullable=True),
        sa.Column("apple_authorization_code", sa.Text(), nullable=True),
        sa.Column("apple_refresh_token", sa.String(length=1024), nullable=True),
        sa.Column("apple_sub_matches", sa.Boolean(), nullable=True),
        sa.Column("apple_email_matches", sa.Boolean(), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_requests")),
    )
    with op.batch_alter_table("sign_in_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_requests_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_requests_expires_at"))
    op.drop_table("sign_in_requests")
