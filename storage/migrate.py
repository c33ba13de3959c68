"""``python -m storage.migrate``: the pre-start step run before every rollout (a Kubernetes Job).

Waits for the database to answer (retrying with backoff for ``--timeout`` seconds, default
``SOSOHAPPY_DATABASE_WAIT_SECONDS``, saying what it waits for), then brings it to the newest Alembic
revision. Exit 0 when migrated, 1 with the database named when it never answered or migrating failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from sqlalchemy.engine import make_url

from config import Settings
from config.logging import configure_logging
from storage.db import check_database, create_db_engine, migrate

log = logging.getLogger("storage.migrate")

#: Seconds one connection attempt may take (MySQL), so a silent host does not eat the whole budget.
CONNECT_TIMEOUT = 5


def shown(url: str) -> str:
    """``url`` as it may be printed: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _probe_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "mysql":
        parsed = parsed.update_query_dict({"connect_timeout": str(CONNECT_TIMEOUT)})
    return parsed.render_as_string(hide_password=False)


def wait_for_database(url: str, timeout: float) -> None:
    """Return once ``SELECT 1`` succeeds on ``url``; ``TimeoutError`` naming it after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        engine = create_db_engine(_probe_url(url), pool_size=1)
        try:
            check_database(engine)
            return
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"database {shown(url)} did not answer within {timeout:g}s (last error: {error})"
                ) from exc
            pause = min(delay, left)
            log.warning(
                "waiting for database %s (attempt %d: %s); retrying in %.1fs, giving up in %.0fs",
                shown(url),
                attempt,
                error,
                pause,
                left,
                extra={"event": "database_wait", "database": shown(url), "attempt": attempt},
            )
            time.sleep(pause)
            delay = min(delay * 2, 10.0)
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    """Wait for the database, migrate it to head; the process exit code."""
    settings = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m storage.migrate",
        description="Wait for the database, then migrate it to the newest revision.",
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
        log.info("database %s answers; migrating to head", shown(url), extra={"database": shown(url)})
        migrate(url)
    except TimeoutError as exc:
        log.error("%s", exc, extra={"event": "migrate_failed", "database": shown(url)})
        return 1
    except Exception as exc:
        log.exception(
            "migrating database %s failed: %s",
            shown(url),
            type(exc).__name__,
            extra={"event": "migrate_failed", "database": shown(url)},
        )
        return 1
    log.info(
        "database %s migrated in %.1fs",
        shown(url),
        time.monotonic() - started,
        extra={"event": "migrated", "database": shown(url)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
