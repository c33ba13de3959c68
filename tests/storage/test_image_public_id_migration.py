"""Revision 0012 gives every existing feed image a random public id, and running it again (after a run
that died half-way, or over a finished one) keeps the ids already given: on MySQL and on SQLite."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import alembic_config, create_db_engine
from tests.storage.helpers import add_first_entry, revision_before

REVISION = "0012"
NOW = datetime(2024, 1, 20)


def _seed(engine: Engine, images: int) -> None:
    add_first_entry(engine)
    with engine.begin() as conn:
        for position in range(images):
            conn.execute(
                text(
                    "INSERT INTO feed_images (id, feed_id, position, content_type, byte_size, etag) "
                    "VALUES (:id, 1, :position, 'image/png', 1, 'e')"
                ),
                {"id": 2**51 + position, "position": position},
            )


def _public_ids(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, public_id FROM feed_images ORDER BY id")).all())


def test_existing_images_get_random_public_ids_and_a_rerun_keeps_them(blank_url: str) -> None:
    cfg = alembic_config(blank_url)
    command.upgrade(cfg, revision_before(blank_url, REVISION))
    engine = create_db_engine(blank_url)
    try:
        _seed(engine, images=7)
        # A run that died after adding the column and numbering one image (MySQL commits each DDL).
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE feed_images ADD COLUMN public_id BIGINT NULL"))
            conn.execute(
                text("UPDATE feed_images SET public_id = :p WHERE id = :id"), {"p": 2**62 + 7, "id": 2**51}
            )
        command.upgrade(cfg, REVISION)
        given = _public_ids(engine)
        assert given[2**51] == 2**62 + 7  # kept
        assert len(set(given.values())) == 7 and all(2**62 <= p < 2**63 for p in given.values())
        columns = {c["name"]: c for c in inspect(engine).get_columns("feed_images")}
        assert columns["public_id"]["nullable"] is False

        command.stamp(
            cfg, revision_before(blank_url, REVISION)
        )  # the whole revision once more, over its own result
        command.upgrade(cfg, REVISION)
        assert _public_ids(engine) == given

        with pytest.raises(IntegrityError), engine.begin() as conn:  # public ids are unique
            conn.execute(
                text("UPDATE feed_images SET public_id = :p WHERE id = :id"),
                {"p": 2**62 + 7, "id": 2**51 + 1},
            )
    finally:
        engine.dispose()


def test_the_revision_goes_down_and_up_again(blank_url: str) -> None:
    cfg = alembic_config(blank_url)
    command.upgrade(cfg, REVISION)
    command.downgrade(cfg, revision_before(blank_url, REVISION))
    engine = create_db_engine(blank_url)
    try:
        assert "public_id" not in {c["name"] for c in inspect(engine).get_columns("feed_images")}
        _seed(engine, images=2)
        command.upgrade(cfg, REVISION)
        assert len(set(_public_ids(engine).values())) == 2
    finally:
        engine.dispose()
