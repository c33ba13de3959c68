"""Fixtures of the DM domain tests: the storage tests' engines (MySQL, then SQLite)."""

from __future__ import annotations

from tests.storage.conftest import engine

__all__ = ["engine"]
