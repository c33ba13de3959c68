"""Fixtures of the storage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from storage.db import create_db_engine


@pytest.fixture(params=["mysql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The session's migrated MySQL database, then its SQLite file."""
    engine = create_db_engine(request.getfixturevalue(f"{request.param}_url"))
    yield engine
    engine.dispose()
