"""The Alembic revisions build exactly the schema the models declare, on MySQL and on SQLite."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import create_db_engine
from storage.models import Base


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_models_match_migrations(dialect: str, request: pytest.FixtureRequest) -> None:
    engine = create_db_engine(request.getfixturevalue(f"{dialect}_url"))
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ on {dialect}: {diff}"
