"""feed image uploads: the image bytes each saveFeed stored, counted against its user's daily budget

Revision ID: 0015
Revises: 0014

Adds ``feed_image_uploads`` (``storage.image_budget``): one row per saveFeed with images, its user, when
and how many bytes, indexed ``(user_id, uploaded_at)`` for the sum over a user's last day. Uploads made
before it are not counted (there is nothing to count them from): every budget starts full. Each step looks
at the schema first, so a run that died half-way (MySQL's DDL is not transactional) is simply run again.
On SQLite the table is ``AUTOINCREMENT`` from the start (``storage.models.NO_ID_REUSE``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

TABLE = "feed_image_uploads"
INDEX = "ix_feed_image_uploads_user_id_uploaded_at"
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if TABLE not in inspector.get_table_names():
        op.create_table(
            TABLE,
            sa.Column("id", BigId, autoincrement=True, nullable=False),
            sa.Column("user_id", BigId, nullable=False),
            sa.Column("uploaded_at", sa.DateTime(), nullable=False),
            sa.Column("byte_size", sa.BigInteger(), nullable=False),
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["users.id"],
                name=op.f("fk_feed_image_uploads_user_id_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_image_uploads")),
            sqlite_autoincrement=True,
        )
        inspector = sa.inspect(op.get_bind())
    if INDEX not in {index["name"] for index in inspector.get_indexes(TABLE)}:
        op.create_index(INDEX, TABLE, ["user_id", "uploaded_at"], unique=False)


def downgrade() -> None:
    op.drop_table(TABLE)
