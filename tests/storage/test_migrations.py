"""The Alembic revisions build exactly the schema the models declare, on MySQL and on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from storage.db import alembic_config, create_db_engine
from storage.models import Base


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_models_match_migrations(dialect: str, request: pytest.FixtureRequest) -> None:
    engine = create_db_engine(request.getfixturevalue(f"{dialect}_url"))
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ on {dialect}: {diff}"


def test_0005_records_the_logins_revoked_before_it(tmp_path: Path) -> None:
    """Replicas seed their revocation view from ``revocations``: logins revoked before the table existed
    get a record (the recent ones; older revocations outlived every token)."""
    url = f"sqlite:///{tmp_path / 'before.db'}"
    command.upgrade(alembic_config(url), "0004")
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, account_email, provider, provider_id, introduction, created_at, "
                "updated_at) VALUES (1, 'a@x.dev+kakao', 'kakao', '1', '', :now, :now)"
            ),
            {"now": now},
        )
        for sid, revoked_at in [("recent", now - timedelta(hours=1)), ("old", now - timedelta(days=30))]:
            conn.execute(
                text(
                    "INSERT INTO login_sessions (id, user_id, generation, created_at, expires_at, revoked_at) "
                    "VALUES (:sid, 1, 0, :now, :now, :revoked_at)"
                ),
                {"sid": sid, "now": now, "revoked_at": revoked_at},
            )
        conn.execute(
            text(
                "INSERT INTO login_sessions (id, user_id, generation, created_at, expires_at) "
                "VALUES ('active', 1, 0, :now, :now)"
            ),
            {"now": now},
        )
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, subject, revoked_at FROM revocations")).all()
        rotated = conn.execute(text("SELECT rotated_at FROM login_sessions")).scalars().all()
    engine.dispose()
    assert [(kind, subject) for kind, subject, _ in rows] == [("session", "recent")]
    assert rotated == [None, None, None]
