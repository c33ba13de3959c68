"""``python -m storage.migrate``: the pre-start step run before every rollout (a Kubernetes Job).

Waits for the database to answer (retrying with backoff for ``--timeout`` seconds, default
``SOSOHAPPY_DATABASE_WAIT_SECONDS``, saying what it waits for), then brings it to the newest Alembic
revision, creates or updates the read-only monitoring user when an admin URL and its password are set
(``storage.monitoring_user``), then converts the direct messages still stored by nickname only
(``dm.migrate_messages``, waiting as long for MongoDB). Exit 0 when migrated, 1 with the store named when
it never answered or migrating failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from config.logging import configure_logging
from config.processes import Process, load_settings
from storage.db import migrate, probe_database, shown_url
from storage.monitoring_user import ensure_monitoring_user

log = logging.getLogger("storage.migrate")

#: What this entry point checks its settings for (``config.processes``).
PROCESS = Process.MIGRATE


def wait_for_database(url: str, timeout: float) -> None:
    """Return once ``SELECT 1`` succeeds on ``url``; ``TimeoutError`` naming it after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            probe_database(url)
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"database {shown_url(url)} did not answer within {timeout:g}s (last error: {error})"
                ) from exc
            pause = min(delay, left)
            log.warning(
                "waiting for database %s (attempt %d: %s); retrying in %.1fs, giving up in %.0fs",
                shown_url(url),
                attempt,
                error,
                pause,
                left,
                extra={"event": "database_wait", "database": shown_url(url), "attempt": attempt},
            )
            time.sleep(pause)
            delay = min(delay * 2, 10.0)


def main(argv: list[str] | None = None) -> int:
    """Wait for the database, migrate it to head; the process exit code."""
    settings = load_settings(PROCESS)
    parser = argparse.ArgumentParser(
        prog="python -m storage.migrate",
        description="Wait for the database, migrate it to the newest revision, then convert legacy messages.",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=settings.database_wait_seconds,
        help="seconds to wait for the database (default: SOSOHAPPY_DATABASE_WAIT_SECONDS, %(default)gs)",
    )
    args = parser.parse_args(argv)
    configure_logging(settings)
    url = settings.sqlalchemy_url
    started = time.monotonic()
    try:
        wait_for_database(url, args.timeout)
        log.info("database %s answers; migrating to head", shown_url(url), extra={"database": shown_url(url)})
        migrate(url)
        if settings.database_admin_url and settings.monitoring_database_password:
            ensure_monitoring_user(
                settings.database_admin_url,
                settings.monitoring_database_user,
                settings.monitoring_database_password,
            )
        else:
            log.info(
                "no SOSOHAPPY_DATABASE_ADMIN_URL or SOSOHAPPY_MONITORING_DATABASE_PASSWORD: "
                "the monitoring user is left as it is",
                extra={"event": "monitoring_user_skipped"},
            )
    except TimeoutError as exc:
        log.error("%s", exc, extra={"event": "migrate_failed", "database": shown_url(url)})
        return 1
    except Exception as exc:
        log.exception(
            "migrating database %s failed: %s",
            shown_url(url),
            type(exc).__name__,
            extra={"event": "migrate_failed", "database": shown_url(url)},
        )
        return 1
    # The pre-start step brings every store to what this release reads: MongoDB's messages too.
    from dm.migrate_messages import convert_from_settings

    try:
        convert_from_settings(settings, args.timeout)
    except Exception as exc:
        log.exception(
            "converting the direct messages in MongoDB failed: %s",
            type(exc).__name__,
            extra={"event": "migrate_failed", "database": "mongodb"},
        )
        return 1
    log.info(
        "database %s migrated in %.1fs",
        shown_url(url),
        time.monotonic() - started,
        extra={"event": "migrated", "database": shown_url(url)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
