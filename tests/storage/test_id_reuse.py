"""SQLite never hands a deleted row's id to a new row (``storage.models.NO_ID_REUSE``, revision 0014):
a new account must not inherit a resigned account's revocation record or ``resign:<user id>``."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import Engine, Integer, delete, text

from storage.db import alembic_config, create_db_engine
from storage.models import Base, User
from tests.storage.helpers import add_user


def _delete_user(engine: Engine, user_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(User).where(User.id == user_id))


def _assert_no_reuse(engine: Engine) -> None:
    first = add_user(engine, None)
    _delete_user(engine, first)
    assert add_user(engine, None) > first


def test_a_deleted_users_id_is_not_reused_in_a_new_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    command.upgrade(alembic_config(url), "head")
    engine = create_db_engine(url)
    _assert_no_reuse(engine)
    engine.dispose()


def test_a_deleted_users_id_is_not_reused_in_a_schema_made_from_the_models(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'models.db'}")
    Base.metadata.create_all(engine)
    _assert_no_reuse(engine)
    engine.dispose()


def test_0014_stops_id_reuse_in_an_existing_sqlite_database(tmp_path: Path) -> None:
    """A file migrated from 0013 with rows in it: its rows and ids are kept, the next user's id is above
    every id still in use, and above the resigned user's recorded by its revocation (the bug's case)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0013")
    engine = create_db_engine(url)
    kept = [add_user(engine, "alice"), add_user(engine, "bob")]
    resigned = add_user(engine, None)
    _delete_user(engine, resigned)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO revocations (kind, subject, revoked_at) VALUES ('user', :s, CURRENT_TIMESTAMP)"
            ),
            {"s": str(resigned)},
        )
    assert add_user(engine, None) == resigned  # the bug, before 0014
    _delete_user(engine, resigned)
    engine.dispose()

    command.upgrade(alembic_config(url), "head")
    engine = create_db_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM users ORDER BY id")).scalars().all() == kept
        assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    newest = add_user(engine, None)
    assert newest > resigned
    _delete_user(engine, newest)
    assert add_user(engine, None) > newest
    engine.dispose()


def test_every_generated_id_is_never_reused_on_sqlite() -> None:
    """A table whose single integer primary key the database generates must carry ``NO_ID_REUSE``."""
    for table in Base.metadata.sorted_tables:
        (column, *others) = table.primary_key.columns
        generated = not others and column.autoincrement is True and isinstance(column.type, Integer)
        if generated:
            assert table.dialect_options["sqlite"]["autoincrement"], table.name
