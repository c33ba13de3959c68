"""The Alembic revisions build exactly the schema the models declare, on MySQL and on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from accounts.pkce import challenge_matches
from storage import logins
from storage.db import alembic_config, create_db_engine, session_factory
from storage.logins import authorize_code_hash, utcnow
from storage.models import Base
from tests.fixtures.ios_client import code_challenge


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


def test_0008_binds_placeholders_canonicalises_emails_and_hashes_codes(blank_url: str) -> None:
    """The sign-in revision moves existing rows: placeholder provider ids become unbound, e-mails take
    their canonical form where no other row has it, rows the CR/LF bug left are removed, and stored
    codes become their hashes (so a code issued before the upgrade is still redeemable)."""
    command.upgrade(alembic_config(blank_url), "0004")
    engine = create_db_engine(blank_url)
    now = utcnow()
    users = [
        ("Mixed.Case@Example.com+kakao", "kakao", "0", None),
        ("nobody@example.com+google", "google", "unknownId", None),
        ("bound@example.com+kakao", "kakao", "3141592653", "bound"),
        ("crlf@example.com\r\nX: 1+kakao", "kakao", "1", None),
        ("kept\n@example.com+kakao", "kakao", "2", "kept"),
    ]
    if engine.dialect.name == "sqlite":  # MySQL's old case-insensitive key refused such a pair
        users += [
            ("Twin@example.com+kakao", "kakao", "5", None),
            ("twin@example.com+kakao", "kakao", "6", None),
        ]
    with engine.begin() as conn:
        for account, provider, provider_id, nickname in users:
            conn.execute(
                text(
                    "INSERT INTO users (account_email, provider, provider_id, nickname, introduction,"
                    " created_at, updated_at) VALUES (:a, :p, :i, :n, '', :t, :t)"
                ),
                {"a": account, "p": provider, "i": provider_id, "n": nickname, "t": now},
            )
        crlf_id = conn.execute(text("SELECT id FROM users WHERE provider_id = '1'")).scalar_one()
        conn.execute(
            text(
                "INSERT INTO login_sessions (id, user_id, generation, created_at, expires_at) VALUES ('s', :u, 0, :t, :t)"
            ),
            {"u": crlf_id, "t": now},
        )
        conn.execute(
            text(
                "INSERT INTO authorize_codes (code, code_challenge, expires_at) VALUES ('old-code', :c, :e)"
            ),
            {"c": code_challenge("k3PqZ8aLw0mT9xRb2VdN"), "e": now + timedelta(minutes=5)},
        )

    command.upgrade(alembic_config(blank_url), "head")
    with engine.connect() as conn:
        rows: dict[str, str | None] = {
            str(a): p for a, p in conn.execute(text("SELECT account_email, provider_id FROM users"))
        }
        sessions = conn.execute(text("SELECT count(*) FROM login_sessions")).scalar_one()
        codes = conn.execute(text("SELECT code FROM authorize_codes")).scalars().all()
    expected = {
        "mixed.case@example.com+kakao": None,
        "nobody@example.com+google": None,
        "bound@example.com+kakao": "3141592653",
        "kept\n@example.com+kakao": "2",  # has a profile: an operator decides
    }
    if engine.dialect.name == "sqlite":
        expected |= {"Twin@example.com+kakao": "5", "twin@example.com+kakao": "6"}  # would collide: kept
    assert rows == expected
    assert sessions == 0
    assert codes == [authorize_code_hash("old-code")]
    with session_factory(engine).begin() as session:
        outcome = logins.redeem_authorize_code(
            session, "old-code", lambda challenge: challenge_matches(challenge, "k3PqZ8aLw0mT9xRb2VdN")
        )
    assert outcome is logins.Redemption.REDEEMED
    if engine.dialect.name == "mysql":  # the column compares exactly now, as Python does
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM users WHERE account_email = 'MIXED.case@example.com+kakao'")
            )
            assert found.scalar_one() == 0
    engine.dispose()


def test_every_revision_downgrades_to_base_and_upgrades_again(blank_url: str) -> None:
    """``alembic downgrade base`` undoes every revision (on MySQL an index a foreign key needs can only
    go with the key or its table), and the schema built again matches the models."""
    config = alembic_config(blank_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_db_engine(blank_url)
    with engine.connect() as conn:
        mysql = conn.dialect.name == "mysql"
        # SQLite's own tables stay (sqlite_sequence, made by revision 0014's AUTOINCREMENT, cannot be dropped).
        sqlite = (
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        )
        tables = "SHOW TABLES" if mysql else sqlite
        left = set(conn.execute(text(tables)).scalars())
    assert left <= {"alembic_version"}, left
    command.upgrade(config, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []
