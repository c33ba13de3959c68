"""Engine creation, migrations and database reachability checks for the relational store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from pymysql.constants import SERVER_STATUS
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import sessionmaker

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


T = TypeVar("T")

#: MySQL/MariaDB's "Deadlock found when trying to get lock": InnoDB rolled the whole transaction back.
_DEADLOCK = 1213


def is_deadlock(exc: OperationalError) -> bool:
    """True when the database chose this transaction as a deadlock victim (nothing was committed)."""
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] == _DEADLOCK


def retry_deadlocks(transaction: Callable[[], T], attempts: int = 4) -> T:
    """Run ``transaction`` (a whole transaction, begun and committed inside), again when InnoDB picks it
    as a deadlock victim, as MySQL's manual prescribes; concurrent inserts into one gap deadlock so.
    The last attempt's error propagates (the API answers it with 503)."""
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except OperationalError as exc:
            if attempt == attempts or not is_deadlock(exc):
                raise
            time.sleep(random.uniform(0, 0.01 * 2**attempt))  # jitter, so the victims do not collide again
    raise AssertionError("unreachable")


#: Seconds a MySQL connection waits for the server's answer to a statement (or to take one) before
#: it gives up with ``OperationalError`` (503 in the API, a retried activity in the worker). Above
#: InnoDB's 50 s lock wait, so a statement waiting for a lock still ends with MySQL's own error.
IO_TIMEOUT_SECONDS = 60


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    """One engine per process: MySQL (pymysql, utf8mb4) or SQLite (WAL, foreign keys on)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    query = dict(parsed.query)
    query.setdefault("charset", "utf8mb4")
    # A server that stops answering (a partition, a hung host) fails the statement instead of holding
    # its thread for good; the URL may say otherwise (``?read_timeout=``).
    query.setdefault("read_timeout", str(IO_TIMEOUT_SECONDS))
    query.setdefault("write_timeout", str(IO_TIMEOUT_SECONDS))
    engine = create_engine(
        parsed.set(query=query),
        # Feed listings aggregate child rows with GROUP_CONCAT; MySQL 8 cuts its result at 1 KiB.
        connect_args={"init_command": "SET SESSION group_concat_max_len = 16777216"},
        pool_size=pool_size,
        # Overflow connections are closed on return: a burst beyond the pool pays a connect each time.
        max_overflow=max(2, pool_size // 4),
        pool_recycle=3600,
        pool_pre_ping=True,
        # No ROLLBACK round trip when a read-only checkout returns to the pool.
        pool_reset_on_return=None,
        isolation_level="READ COMMITTED",
        # An error's text names its statement but not the values bound to it (e-mails, device and
        # Apple tokens, message text): it reaches logs and, through a failed activity, Temporal.
        hide_parameters=True,
    )
    event.listen(engine, "reset", _roll_back_an_open_transaction)
    return engine


def _roll_back_an_open_transaction(dbapi_conn: Any, _record: Any, state: Any) -> None:
    """Without the pool's ROLLBACK on every return, a connection whose commit failed before reaching
    the server (so it stays valid) would come back with its transaction open, and the next checkout
    would commit those writes with its own. The server's last status says whether one is open: no
    round trip otherwise."""
    if (
        not state.transaction_was_reset
        and (dbapi_conn.server_status or 0) & SERVER_STATUS.SERVER_STATUS_IN_TRANS
    ):
        dbapi_conn.rollback()


def session_factory(engine: Engine) -> sessionmaker:
    """A ``sessionmaker`` bound to ``engine`` that keeps loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def check_database(engine: Engine) -> None:
    """Raise if the database cannot answer ``SELECT 1``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


#: Seconds one MySQL connection attempt of ``probe_database`` may take, so a silent host fails fast.
PROBE_CONNECT_TIMEOUT = 5


def shown_url(url: str) -> str:
    """``url`` as it may be printed or logged: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def probe_database(url: str) -> None:
    """Raise unless the database at ``url`` answers ``SELECT 1`` (a throwaway engine; a MySQL connect
    gives up after ``PROBE_CONNECT_TIMEOUT`` seconds)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "mysql":
        parsed = parsed.update_query_dict({"connect_timeout": str(PROBE_CONNECT_TIMEOUT)})
    engine = create_db_engine(parsed.render_as_string(hide_password=False), pool_size=1)
    try:
        check_database(engine)
    finally:
        engine.dispose()


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at ``storage/migrations`` for ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest revision (idempotent)."""
    command.upgrade(alembic_config(url), "head")
