"""Users made directly in a storage test's database."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, text

from storage.db import alembic_config
from storage.models import User

NOW = datetime(2024, 1, 20)
ROOT = Path(__file__).resolve().parents[2]


def run_prestart(env: dict[str, str], timeout: str = "20") -> subprocess.CompletedProcess[str]:
    """``python -m storage.migrate`` as the migration Job runs it (schema, then legacy messages), with
    ``env`` and its own database wait of ``timeout`` seconds; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "storage.migrate", "--timeout", timeout],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def add_user(engine: Engine, nickname: str | None) -> int:
    """A new user with exactly ``nickname`` (stored as given, even when not canonical): its id."""
    with engine.begin() as conn:
        result = conn.execute(
            insert(User).values(
                account_email=f"{uuid.uuid4().hex}@x.dev+kakao",
                provider="kakao",
                provider_id="1",
                nickname=nickname,
                introduction="",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])


def make_user(engine: Engine) -> tuple[int, str]:
    """A new user with a fresh nickname: ``(id, nickname)``."""
    nickname = "s" + uuid.uuid4().hex[:8]
    return add_user(engine, nickname), nickname


def revision_before(url: str, revision: str) -> str:
    """The revision ``revision`` follows (read from the scripts, so a re-chained history still works)."""
    down = ScriptDirectory.from_config(alembic_config(url)).get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def add_first_entry(engine: Engine) -> None:
    """User 1 with an entry (feed 1), in plain SQL, so a schema of any revision since 0004 takes them."""
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
