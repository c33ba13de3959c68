"""Engine creation, migrations and database reachability checks for the relational store."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
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
#: it gives up with ``OperationalError`` (a retried activity in the worker). Above InnoDB's 50 s lock
#: wait, so a statement waiting for a lock still ends with MySQL's own error.
IO_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class DatabaseWaits:
    """How long an engine's connections wait on MySQL before giving up with an error (SQLite: only
    ``pool_seconds`` applies)."""

    #: For the answer to a statement (or a ping); the URL's ``read_timeout`` overrides it.
    io_seconds: float
    #: For a new connection (the TCP connect, then the server's greeting, the login and the session
    #: set-up) and for the pool's ping of a connection it hands out; at most ``io_seconds``.
    connect_seconds: float
    #: For a pooled connection while all are in use (``sqlalchemy.exc.TimeoutError``).
    pool_seconds: float
    #: For a row lock (InnoDB) or a table's metadata lock, set on each session; below ``io_seconds``,
    #: so a lock wait ends with MySQL's own error and the connection stays usable. ``None``: the
    #: server's (InnoDB 50 s, metadata a year).
    lock_seconds: int | None = None


#: Workers, migrations and tools: patient (an activity is retried anyway, and nobody waits on it).
BACKGROUND_WAITS = DatabaseWaits(
    io_seconds=IO_TIMEOUT_SECONDS, connect_seconds=IO_TIMEOUT_SECONDS, pool_seconds=30
)

#: The API: a request that meets a stalled or locked database is answered 503 well within the app's
#: 60 s request timeout (URLSession's default, also the ingress's read timeout): at worst the pool
#: wait, the checkout's ping and reconnect, then a statement the server stops answering:
#: 10 + 5 + 5 + 20 = 40 s; a server silent from the start is found out within 10 + 5 + 5 s.
REQUEST_WAITS = DatabaseWaits(io_seconds=20, connect_seconds=5, pool_seconds=10, lock_seconds=15)


def create_db_engine(url: str, *, pool_size: int = 10, waits: DatabaseWaits = BACKGROUND_WAITS) -> Engine:
    """One engine per process: MySQL (pymysql, utf8mb4) or SQLite (WAL, foreign keys on), its
    connections giving up after ``waits``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_pre_ping=False,
            pool_timeout=waits.pool_seconds,
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
    query = {key: str(value) for key, value in parsed.query.items()}
    query.setdefault("charset", "utf8mb4")
    # A server that stops answering (a partition, a hung host) fails the statement instead of holding
    # its thread for good; the URL may say otherwise (``?read_timeout=``).
    query.setdefault("read_timeout", f"{waits.io_seconds:g}")
    query.setdefault("write_timeout", f"{waits.io_seconds:g}")
    query.setdefault("connect_timeout", f"{min(waits.connect_seconds, float(query['read_timeout'])):g}")
    # Feed listings aggregate child rows with GROUP_CONCAT; MySQL 8 cuts its result at 1 KiB.
    session = ["group_concat_max_len = 16777216"]
    if waits.lock_seconds is not None:
        session += [
            f"innodb_lock_wait_timeout = {waits.lock_seconds}",
            f"lock_wait_timeout = {waits.lock_seconds}",
        ]
    engine = create_engine(
        parsed.set(query=query),
        connect_args={"init_command": "SET SESSION " + ", ".join(session)},
        pool_size=pool_size,
        # Overflow connections are closed on return: a burst beyond the pool pays a connect each time.
        max_overflow=max(2, pool_size // 4),
        pool_timeout=waits.pool_seconds,
        pool_recycle=3600,
        pool_pre_ping=True,
        # No ROLLBACK round trip when a read-only checkout returns to the pool.
        pool_reset_on_return=None,
        isolation_level="READ COMMITTED",
        # An error's text names its statement but not the values bound to it (e-mails, device and
        # Apple tokens, message text): it reaches logs and, through a failed activity, Temporal.
        hide_parameters=True,
    )
    event.listen(engine, "do_connect", _connect_within_connect_timeout)
    _ping_within_connect_timeout(engine.dialect, int(query["connect_timeout"]))
    event.listen(engine, "reset", _roll_back_an_open_transaction)
    return engine


def _connect_within_connect_timeout(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
    """pymysql's ``connect_timeout`` covers only the TCP connect: the greeting, the login and the
    ``init_command`` wait ``read_timeout``, so a server gone silent would hold each new connection
    (after a failed ping: each reconnect) for the whole statement timeout. Those steps wait
    ``connect_timeout`` here; the connection then waits ``read_timeout``/``write_timeout`` as asked."""
    io = {key: cparams.get(key) for key in ("read_timeout", "write_timeout")}
    handshake = cparams.get("connect_timeout")
    conn = dialect.loaded_dbapi.connect(
        *cargs, **(cparams | {key: handshake for key, value in io.items() if value is not None})
    )
    # pymysql reads these attributes before each read and write (no public setter).
    conn._read_timeout, conn._write_timeout = io["read_timeout"], io["write_timeout"]
    return conn


def _ping_within_connect_timeout(dialect: Any, seconds: int) -> None:
    """The pool pings each connection it hands out (``pool_pre_ping``) and waits ``read_timeout`` for the
    answer: a server gone silent would hold every checkout for a whole statement timeout before the
    reconnect. A live server answers a ping at once, so it waits ``seconds`` (this engine's dialect
    only: each engine has its own)."""
    ping = dialect.do_ping

    def do_ping(dbapi_conn: Any) -> Any:
        statement_timeout = dbapi_conn._read_timeout
        dbapi_conn._read_timeout = min(seconds, statement_timeout or seconds)
        try:
            return ping(dbapi_conn)
        finally:
            dbapi_conn._read_timeout = statement_timeout

    dialect.do_ping = do_ping


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
