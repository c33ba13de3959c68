"""Revision 0016 makes ``device_registrations.token`` compare exactly on MySQL (``utf8mb4_bin``), keeping
every row; running it again over its own result (after a run that died half-way: MySQL's DDL is not
transactional) is harmless; going down keeps the earliest of tokens the old collation calls equal. On
SQLite (which compares exactly already) it changes nothing."""

from __future__ import annotations

from datetime import datetime

from alembic import command
from sqlalchemy import Engine, text

from storage.db import alembic_config, create_db_engine
from tests.storage.helpers import add_first_entry, revision_before

REVISION = "0016"
NOW = datetime(2024, 1, 20)
TOKENS = {1: "AbCdEf-token-x", 2: "zz-token"}


def _rows(engine: Engine) -> dict[int, tuple[int, str]]:
    """``id -> (user id, token)``."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, user_id, token FROM device_registrations"))
        return {row.id: (row.user_id, row.token) for row in rows}


def _collation(engine: Engine) -> str | None:
    """The token column's collation (MySQL), ``None`` on SQLite."""
    if engine.dialect.name != "mysql":
        return None
    query = (
        "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
        "AND TABLE_NAME = 'device_registrations' AND COLUMN_NAME = 'token'"
    )
    with engine.connect() as conn:
        return str(conn.execute(text(query)).scalar_one())


def _register(engine: Engine, device_id: int, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO device_registrations (id, user_id, session_id, token, created_at, updated_at) "
                "VALUES (:id, 1, NULL, :token, :now, :now)"
            ),
            {"id": device_id, "token": token, "now": NOW},
        )


def _same_case_insensitively(engine: Engine, token: str) -> int:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM device_registrations WHERE token = :t"), {"t": token})
        return int(found.scalar_one())


def test_the_revision_makes_tokens_exact_keeps_the_rows_and_goes_down_and_up_again(blank_url: str) -> None:
    cfg = alembic_config(blank_url)
    before = revision_before(blank_url, REVISION)
    command.upgrade(cfg, before)
    engine = create_db_engine(blank_url)
    try:
        add_first_entry(engine)
        for device_id, token in TOKENS.items():
            _register(engine, device_id, token)
        mysql = engine.dialect.name == "mysql"
        old_collation = _collation(engine)
        if mysql:  # the bug: the table's collation finds a case variant
            assert old_collation != "utf8mb4_bin"
            assert _same_case_insensitively(engine, TOKENS[1].swapcase()) == 1
        rows = _rows(engine)

        command.upgrade(cfg, REVISION)
        assert _collation(engine) == ("utf8mb4_bin" if mysql else None)
        assert _rows(engine) == rows
        assert _same_case_insensitively(engine, TOKENS[1].swapcase()) == 0
        _register(engine, 3, TOKENS[1].swapcase())  # the unique index lets a case variant in now

        command.stamp(cfg, before)  # the whole revision again, over its own result
        command.upgrade(cfg, REVISION)
        assert _collation(engine) == ("utf8mb4_bin" if mysql else None)
        assert len(_rows(engine)) == 3

        command.downgrade(cfg, before)
        assert _collation(engine) == old_collation
        expected = dict(rows)
        if not mysql:  # SQLite compares exactly either way: the variant stays
            expected[3] = (1, TOKENS[1].swapcase())
        assert _rows(engine) == expected  # on MySQL the later variant went, the earliest stayed
        command.stamp(cfg, REVISION)  # going down again is harmless too (the column is the table's already)
        command.downgrade(cfg, before)
        assert _rows(engine) == expected

        command.upgrade(cfg, REVISION)
        assert _collation(engine) == ("utf8mb4_bin" if mysql else None)
        assert _rows(engine) == expected
    finally:
        engine.dispose()
