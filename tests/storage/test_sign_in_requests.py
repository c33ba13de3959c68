"""Sign-in requests on MySQL: concurrent sign-ins store and remove their requests without deadlocking.

Found by ``bench.signin``: one request's purge of expired rows ran ``DELETE … WHERE expires_at < now``,
which locks the ``expires_at`` index entries it scans (up to the first live one) before their rows, while
another request's ``remove`` (by id) locks a row before its index entry; InnoDB picked one as a deadlock
victim and the sign-in answered 503. The purge now deletes by primary key what a non-locking read
found, so every statement locks a row before its index entries. Here threads store and remove requests
side by side, with expired rows to purge all along, as concurrent sign-ins do; no statement may fail
(the deadlock retry of the route is not used, so a deadlock shows)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from storage import sign_in_requests
from storage.db import create_db_engine, session_factory
from storage.logins import utcnow
from storage.models import SignInRequest
from tests.fixtures.databases import scratch_mysql_database

THREADS = 8
ROUNDS = 40


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A private MySQL database: only this test's rows in ``sign_in_requests``."""
    with scratch_mysql_database("sosohappy_signin_requests") as url:
        engine = create_db_engine(url)
        yield engine
        engine.dispose()


def _expired_rows(sessions: sessionmaker[Session], tag: str, n: int) -> None:
    with sessions.begin() as s:
        s.execute(
            insert(SignInRequest),
            [
                {
                    "id": f"{tag}{i:04d}",
                    "email": "crashed@example.com",
                    "provider": "kakao",
                    "provider_id": str(i),
                    "expires_at": utcnow() - timedelta(minutes=1 + i),
                }
                for i in range(n)
            ],
        )


def test_concurrent_sign_ins_store_and_remove_requests_without_a_deadlock(engine: Engine) -> None:
    sessions = session_factory(engine)
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def sign_ins(worker: int) -> None:
        start.wait()
        try:
            for round_ in range(ROUNDS):
                if round_ % 5 == 0:  # rows a crash left behind keep appearing
                    _expired_rows(sessions, f"x{worker:02d}{round_:03d}", 3)
                with sessions.begin() as s:
                    request_id = sign_in_requests.create(
                        s,
                        email=f"u{worker}@example.com",
                        provider="kakao",
                        provider_id=str(worker),
                        device_token="",
                        apple_authorization_code=None,
                    )
                with sessions.begin() as s:
                    assert sign_in_requests.get(s, request_id, lock=True) is not None
                    sign_in_requests.remove(s, request_id)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=sign_ins, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    with sessions() as s:
        left = list(s.scalars(select(SignInRequest.id).where(SignInRequest.expires_at >= utcnow())))
    assert left == []  # every stored request was removed
