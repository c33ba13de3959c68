"""The revocation view: replicas authenticate without the database, learn revocations through the broker,
and never lose one: the view is seeded from and reconciled with the database's revocation records."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from accounts.revocations import RevocationView
from accounts.tokens import ACCESS, TokenClaims
from activities.deps import ActivityDeps
from activities.resign import ResignActivities
from api.main import create_app
from api.resources import Resources
from api.security import load_user, revoked_in_database
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from storage import logins, users
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.logins import reissue_twice


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
    http: httpx.Client, second_replica: tuple[FastAPI, str], settings: Settings
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

    # The same replica with a view that is not caught up (e.g. the broker was lost): the database is asked.
    lost = dataclasses.replace(res, revocations=RevocationView(settings.access_token_ttl_seconds))
    event.listen(res.engine, "before_cursor_execute", count)
    try:
        user = load_user(res, claims)
        queries_with_view = len(statements)
        load_user(lost, claims)
    finally:
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


def _claims(res: Resources, phone: IOSClient) -> TokenClaims:
    return res.tokens.verify(phone.access.removeprefix("Bearer "), ACCESS)


def _authed_status(url: str, phone: IOSClient) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        replica = IOSClient(client, access=phone.access, email=phone.email)
        return replica.get_query("/auth-service/checkDuplicateNickname", {"nickname": "x"}).status_code


def test_a_sign_out_while_the_broker_is_down_reaches_every_replica(
    http: httpx.Client, settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    broker = ManagedProcess("kafka", broker_argv(port), tmp_path / "kafka.log").start().wait_for_port(port)
    # No periodic poll during the test: only the start-up seed and the reconcile on reconnect can help.
    private = settings.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{port}", "revocation_reconcile_seconds": 3600}
    )
    a_app, b_app, c_app = create_app(private), create_app(private), create_app(private)
    try:
        with ExitStack() as stack:
            a_url = stack.enter_context(serve_in_thread(a_app, http="h11"))
            b_url = stack.enter_context(serve_in_thread(b_app, http="h11"))
            a, b = _resources(a_app), _resources(b_app)
            _wait(lambda: a.revocations.ready and b.revocations.ready)
            phone = IOSClient(httpx.Client(base_url=a_url, timeout=30))
            assert phone.sign_in(f"d{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
            claims = _claims(a, phone)
            assert _authed_status(b_url, phone) == 200

            broker.stop()
            _wait(lambda: not a.revocations.ready and not b.revocations.ready)
            assert phone.post_multipart("/auth-service/signOut", []).status_code == 200
            broker.start().wait_for_port(port)  # in memory: it comes back empty

            # B reconnected and read the database again before trusting its view.
            _wait(lambda: b.revocations.ready, timeout=60)
            assert b.revocations.is_revoked(claims.session_id, claims.user_id) is True
            assert _authed_status(b_url, phone) == 403
            # C starts after all this: the topic is empty, its view is seeded from the database.
            c_url = stack.enter_context(serve_in_thread(c_app, http="h11"))
            c = _resources(c_app)
            _wait(lambda: c.revocations.ready, timeout=60)
            assert c.revocations.is_revoked(claims.session_id, claims.user_id) is True
            assert _authed_status(c_url, phone) == 403
    finally:
        broker.stop()


def test_a_revocation_never_broadcast_reaches_the_view_by_polling(
    http: httpx.Client, settings: Settings, activity_deps: ActivityDeps
) -> None:
    app = create_app(settings.model_copy(update={"revocation_reconcile_seconds": 0.2}))
    with serve_in_thread(app, http="h11") as url:
        res = _resources(app)
        _wait(lambda: res.revocations.ready)
        phone = IOSClient(http)
        assert phone.sign_in(f"p{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
        claims = _claims(res, phone)
        assert _authed_status(url, phone) == 200
        # A replica revoked the login and died before publishing: only the database knows.
        with activity_deps.sessions.begin() as session:
            assert logins.revoke_session(session, claims.session_id) is not None
        _wait(lambda: res.revocations.is_revoked(claims.session_id, claims.user_id) is True)
        assert _authed_status(url, phone) == 403


def test_the_view_agrees_with_the_database(
    http: httpx.Client, settings: Settings, activity_deps: ActivityDeps
) -> None:
    def signed_in(email: str | None = None) -> IOSClient:
        phone = IOSClient(http)
        assert phone.sign_in(email or f"g{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
        return phone

    def user_id(phone: IOSClient) -> int:
        return int(_unverified(phone)["uid"])

    active, signed_out, reused, resigned = signed_in(), signed_in(), signed_in(), signed_in()
    assert signed_out.post_multipart("/auth-service/signOut", []).status_code == 200
    stolen = reused.refresh
    reissue_twice(activity_deps, reused, settings.refresh_reuse_grace_seconds)
    assert IOSClient(http, refresh=stolen, email=reused.email).reissue().status_code == 403
    assert resigned.post_multipart("/auth-service/resign", [("email", resigned.email)]).status_code == 200
    # Resign as its workflow does it, with a login opened between its first and last step.
    early = signed_in()
    with activity_deps.sessions.begin() as session:
        logins.revoke_user_sessions(session, user_id(early))
    late = signed_in(early.email.rsplit("+", 1)[0])
    assert user_id(late) == user_id(early)
    ResignActivities(activity_deps).delete_account(user_id(early))
    _wait(lambda: _account_gone(activity_deps, user_id(resigned)), timeout=60)

    expected = {"active": False, "signed out": True, "reused": True, "resigned": True}
    expected |= {"revoked by resign": True, "opened during resign": True}
    phones = dict(zip(expected, [active, signed_out, reused, resigned, early, late], strict=True))
    # A replica started now knows these only from the database (and whatever the topic still holds).
    replica = create_app(settings)
    with serve_in_thread(replica, http="h11"):
        res = _resources(replica)
        _wait(lambda: res.revocations.ready)
        for name, phone in phones.items():
            claims = _claims(res, phone)
            view = res.revocations.is_revoked(claims.session_id, claims.user_id)
            assert (view, revoked_in_database(res, claims)) == (expected[name],) * 2, name


def _unverified(phone: IOSClient) -> dict[str, Any]:
    return jwt.decode(phone.access.removeprefix("Bearer "), options={"verify_signature": False})


def _account_gone(deps: ActivityDeps, user_id: int) -> bool:
    with deps.sessions() as session:
        return users.by_id(session, user_id) is None
