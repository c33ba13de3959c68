"""The MySQL user that monitoring reads the server's state with (``mysqld_exporter`` and Grafana's MySQL
datasource), created or brought up to date by the pre-start step (``python -m storage.migrate``).

Least privilege: the user can read the server's status, variables and replication state, and nothing
else. ``SHOW GLOBAL STATUS`` and ``SHOW GLOBAL VARIABLES`` need no privilege; ``SHOW REPLICA STATUS``
needs ``REPLICATION CLIENT`` (MySQL) or ``REPLICA MONITOR`` (MariaDB >= 10.5.9). It gets no ``SELECT`` on
any schema and no ``PROCESS``, which would show other sessions' statements with their literal values
(e-mails, message text). Every run converges: the password is set again, every other privilege revoked,
the needed ones granted, so a re-run is harmless and a rotated Secret takes effect.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from storage.db import create_db_engine, shown_url

log = logging.getLogger("storage.monitoring_user")

#: Concurrent connections the user may hold: the exporter's few plus Grafana's.
MAX_CONNECTIONS = 10
#: What MySQL and MariaDB call the privilege that allows ``SHOW REPLICA STATUS``.
REPLICA_STATUS_PRIVILEGE = {"mysql": "REPLICATION CLIENT", "mariadb": "REPLICATION CLIENT, REPLICA MONITOR"}
_USER_NAME = re.compile(r"[a-z_][a-z0-9_]{0,31}")


def _server_kind(conn: Connection) -> str:
    version = str(conn.execute(text("SELECT VERSION()")).scalar_one())
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def ensure_monitoring_user(admin_url: str, user: str, password: str) -> None:
    """Create the monitoring ``user`` (any host) on the MySQL/MariaDB server of ``admin_url`` if it does
    not exist, set its ``password`` and leave it exactly the privileges of the module docstring.
    ``admin_url`` must name a user allowed to ``CREATE USER`` and ``GRANT`` (root, or the DBA's)."""
    if not _USER_NAME.fullmatch(user):
        raise ValueError(f"monitoring user name {user!r} is not [a-z_][a-z0-9_]{{0,31}}")
    if not password:
        raise ValueError("the monitoring user needs a password")
    if make_url(admin_url).get_backend_name() != "mysql":
        raise ValueError(f"{shown_url(admin_url)} is not a MySQL server")
    account = f"'{user}'@'%'"  # the name is checked above; the password goes as a bound parameter
    engine = create_db_engine(admin_url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            kind = _server_kind(conn)
            limit = f"WITH MAX_USER_CONNECTIONS {MAX_CONNECTIONS}"
            conn.execute(
                text(f"CREATE USER IF NOT EXISTS {account} IDENTIFIED BY :pw {limit}"), {"pw": password}
            )
            conn.execute(text(f"ALTER USER {account} IDENTIFIED BY :pw {limit}"), {"pw": password})
            conn.execute(text(f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"))
            conn.execute(text(f"GRANT {REPLICA_STATUS_PRIVILEGE[kind]} ON *.* TO {account}"))
    finally:
        engine.dispose()
    log.info(
        "monitoring user %s is ready on %s",
        user,
        shown_url(admin_url),
        extra={"event": "monitoring_user_ready", "database": shown_url(admin_url)},
    )
