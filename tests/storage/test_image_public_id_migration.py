"""Revision 0012 gives every existing feed image a random public id, and running it again (after a run
that died half-way, or over a finished one) keeps the ids already given: on MySQL and on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import alembic_config, create_db_engine
from tests.fixtures.databases import scratch_mysql_database
from tests.storage.helpers import revision_before

REVISION = "0012"
NOW = datetime(2024, 1, 20)


@pytest.fixture(params=["mysql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each dialect, dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'images.db'}"
        return
    with scratch_mysql_database("sosohappy_pubid", revision=None) as scratch:
        yield scratch


def _seed(engine: Engine, images: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, account_email, provider, provider_id, introduction, created_at, "
                "updated_at) VALUES (1, 'a@x.dev+kakao', 'kakao', '1', '', :now, :now)"
            ),
            {"now": NOW},
        )
        conn.execute(
            text(
                "INSERT INTO feeds (id, user_id, day, date, weather, happiness, text, is_public, created_at, "
                "updated_at) VALUES (1, 1, 20240120, 2024012017042712, 'sunny', 3, 't', 1, :now, :now)"
            ),
            {"now": NOW},
        )
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


def test_existing_images_get_random_public_ids_and_a_rerun_keeps_them(url: str) -> None:
    cfg = alembic_config(url)
    command.upgrade(cfg, revision_before(url, REVISION))
    engine = create_db_engine(url)
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
            cfg, revision_before(url, REVISION)
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


def test_the_revision_goes_down_and_up_again(url: str) -> None:
    cfg = alembic_config(url)
    command.upgrade(cfg, REVISION)
    command.downgrade(cfg, revision_before(url, REVISION))
    engine = create_db_engine(url)
    try:
        assert "public_id" not in {c["name"] for c in inspect(engine).get_columns("feed_images")}
        _seed(engine, images=2)
        command.upgrade(cfg, REVISION)
        assert len(set(_public_ids(engine).values())) == 2
    finally:
        engine.dispose()
