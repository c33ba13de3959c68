"""Kafka-fed revocation view: replicas authenticate without the database and learn revocations within 1 s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from accounts.tokens import ACCESS
from api.main import create_app
from api.resources import Resources
from api.security import load_user
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient


def _wait(predicate: Any, timeout: float = 30) -> None:
    """Wait for ``predicate`` with a generous deadline (a condition, never a speed)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def second_replica(settings: Settings, api_url: str) -> Iterator[tuple[FastAPI, str]]:
    app = create_app(settings)
    with serve_in_thread(app, http="h11") as url:
        yield app, url


def _resources(app: FastAPI) -> Resources:
    return app.state.resources


def test_revocations_reach_the_other_replica_through_the_broker(
    http: httpx.Client, second_replica: tuple[FastAPI, str]
) -> None:
    app, url = second_replica
    res = _resources(app)
    _wait(lambda: res.revocations.ready)
    phone = IOSClient(http)
    assert phone.sign_in(f"v{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    other = IOSClient(httpx.Client(base_url=url), access=phone.access, email=phone.email)
    assert other.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 200

    claims = res.tokens.verify(phone.access.removeprefix("Bearer "), ACCESS)
    assert phone.post_multipart("/auth-service/signOut", []).status_code == 200
    # The other replica's in-memory view learns it from the topic (its database fallback is not asked).
    _wait(lambda: res.revocations.is_revoked(claims.session_id, claims.user_id) is True)
    assert other.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code == 403


def test_a_caught_up_replica_authenticates_without_the_database(
    http: httpx.Client, second_replica: tuple[FastAPI, str]
) -> None:
    app, _ = second_replica
    res = _resources(app)
    _wait(lambda: res.revocations.ready)
    phone = IOSClient(http)
    assert phone.sign_in(f"w{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    claims = res.tokens.verify(phone.access.removeprefix("Bearer "), ACCESS)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(res.engine, "before_cursor_execute", count)
    try:
        user = load_user(res, claims)
        queries_with_view = len(statements)
        res.revocations.ready = False  # e.g. the broker was lost: the database is asked instead
        load_user(res, claims)
    finally:
        res.revocations.ready = True
        event.remove(res.engine, "before_cursor_execute", count)
    assert user.id == claims.user_id
    assert queries_with_view == 0
    assert any("login_sessions" in s for s in statements) and any("users" in s for s in statements)


def test_losing_the_broker_falls_back_to_the_database_and_recovers(
    http: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    broker = ManagedProcess("kafka", broker_argv(port), tmp_path / "kafka.log").start().wait_for_port(port)
    app = create_app(settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"}))
    try:
        with serve_in_thread(app, http="h11") as url:
            res = _resources(app)
            _wait(lambda: res.revocations.ready)
            phone = IOSClient(http)
            assert phone.sign_in(f"b{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
            replica = IOSClient(httpx.Client(base_url=url), access=phone.access, email=phone.email)

            broker.stop()
            _wait(lambda: not res.revocations.ready, timeout=30)
            assert (
                replica.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code
                == 200
            )
            # Signed out elsewhere while this replica cannot hear Kafka: the database still says no.
            assert phone.post_multipart("/auth-service/signOut", []).status_code == 200
            assert (
                replica.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code
                == 403
            )

            broker.start().wait_for_port(port)
            _wait(lambda: res.revocations.ready, timeout=30)
    finally:
        broker.stop()
