"""Revision 0015 adds ``feed_image_uploads`` (the daily image budget's counts) beside existing feeds and
images, on MySQL and on SQLite; it goes down and up again, and running it again over its own result
(after a run that died half-way: MySQL's DDL is not transactional) finishes it."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text

from storage import image_budget
from storage.db import alembic_config, create_db_engine
from tests.storage.helpers import add_first_entry, revision_before

REVISION = "0015"
TABLE = "feed_image_uploads"
INDEX = "ix_feed_image_uploads_user_id_uploaded_at"
NOW = datetime(2024, 1, 20)


def _seed(engine: Engine) -> None:
    """A user with an entry and its image, stored before the revision."""
    add_first_entry(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO feed_images (id, public_id, feed_id, position, content_type, byte_size, etag) "
                "VALUES (:id, :p, 1, 0, 'image/png', 1, 'e')"
            ),
            {"id": 2**51, "p": 2**62},
        )


def _has_table(engine: Engine) -> bool:
    return TABLE in inspect(engine).get_table_names()


def test_the_revision_adds_the_counts_and_goes_down_and_up_again(blank_url: str) -> None:
    cfg = alembic_config(blank_url)
    command.upgrade(cfg, revision_before(blank_url, REVISION))
    engine = create_db_engine(blank_url)
    try:
        _seed(engine)
        engine.dispose()  # a pooled SQLite connection would go on listing the schema it read before
        command.upgrade(cfg, REVISION)
        assert {index["name"] for index in inspect(engine).get_indexes(TABLE)} >= {INDEX}
        with engine.begin() as conn:  # uploads before it are not counted: the budget starts full
            assert conn.execute(text(f"SELECT count(*) FROM {TABLE}")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM feed_images")).scalar_one() == 1
            assert image_budget.charge(conn, 1, 10, 10, NOW) >= 1
            with pytest.raises(image_budget.OverBudget) as over:
                image_budget.charge(conn, 1, 1, 10, NOW)
            assert over.value.retry_after == 24 * 3600

        command.stamp(cfg, revision_before(blank_url, REVISION))  # the whole revision again, over its result
        command.upgrade(cfg, REVISION)
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT byte_size FROM {TABLE}")).scalars().all() == [10]

        command.downgrade(cfg, revision_before(blank_url, REVISION))
        assert not _has_table(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM feed_images")).scalar_one() == 1
        command.upgrade(cfg, REVISION)
        assert _has_table(engine)
    finally:
        engine.dispose()
