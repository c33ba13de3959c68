"""Load shedding (``api.shedding``): with every request thread busy, a request that gets none within
``SOSOHAPPY_REQUEST_THREAD_WAIT_SECONDS`` is answered 503 with ``Retry-After`` (counted by route), a DM
handshake is refused the same way, nothing the shed requests would have written is written, health and
readiness still answer, and once the threads are free the same requests are served. The threads are
held first by requests the test releases (counted events), then by a MariaDB that stops answering until
the test, having seen the burst shed, lets it answer (a proxy holds every byte; none of the API's database waits ends it)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from sqlalchemy.engine import make_url
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from activities.deps import ActivityDeps
from api.main import create_app
from api.routes import auth, dm, dm_connect, feed, health, images, profile
from api.routes.dm_connect import TRY_AGAIN_LATER
from api.shedding import RETRY_AFTER_SECONDS, RequestThreads
from config import Settings
from storage import users
from tests.api.feed_helpers import day_feed, feed_count, kst, like, member, unique_year, user_id
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.stalling_proxy import StallingProxy, stalling_proxy
from tests.fixtures.waiting import wait_until

#: Generous: every wait below is for a condition, and this is only how long it may take to come true.
PATIENCE = 55.0
#: Longer than the test ever holds the database (it lets it answer once it saw what it waits for): a
#: bound on a test that went wrong, never a time anything here waits for.
HELD_AT_MOST = 4 * PATIENCE
THREADS = 2
WAIT = 0.5
NO_ANSWER = "no answer within the test's patience"
BUSY = f"the server is busy (no request thread free within {WAIT:g} s), try again"
ROUTERS = (auth, dm, dm_connect, feed, health, images, profile)
SHED_ROUTES = (
    "/feed-service/saveFeed",
    "/feed-service/updateLike",
    "/auth-service/block",
    "/dm-service/connect-dm",
)


@dataclass
class Replica:
    """An API replica with ``THREADS`` request threads, its database behind ``proxy``."""

    base: str
    proxy: StallingProxy
    threads: RequestThreads


@pytest.fixture
def replica(settings: Settings) -> Iterator[Replica]:
    assert settings.database_url
    target = make_url(settings.database_url)
    with stalling_proxy(target.host or "127.0.0.1", target.port or 3306) as proxy:
        # A request the test holds at the database waits there until the test lets the server answer,
        # not for the API's own database waits (storage.db.REQUEST_WAITS, tried in test_database_stalls).
        waits = dict.fromkeys(("connect_timeout", "read_timeout", "write_timeout"), f"{HELD_AT_MOST:g}")
        url = (
            target.set(host="127.0.0.1", port=proxy.port)
            .update_query_dict(waits)
            .render_as_string(hide_password=False)
        )
        update = {"database_url": url, "database_pool_size": THREADS, "request_thread_wait_seconds": WAIT}
        app = create_app(settings.model_copy(update=update))
        with serve_in_thread(app, http="h11", ws="websockets-sansio") as base:
            yield Replica(base, proxy, app.state.request_threads)


def _shed_counts() -> dict[str, float]:
    return {
        route: REGISTRY.get_sample_value("sosohappy_requests_shed_total", {"route": route}) or 0.0
        for route in SHED_ROUTES
    }


def _dm_handshake(app: IOSClient, base: str) -> int:
    """How a DM socket's handshake ends: 101 (opened, and closed again by the test), or the close code
    of a socket the server closed at once, with the busy reason."""
    url = f"ws://{base.removeprefix('http://')}/dm-service/connect-dm?nickname={quote(app.nickname)}"
    headers = {"Authorization": app.access, "email": app.email}
    with connect(url, additional_headers=headers, open_timeout=PATIENCE) as ws:
        try:
            assert ws.ping(ack_on_close=True).wait(PATIENCE)  # a pong, or the server's close
            ws.recv(timeout=0)
        except TimeoutError:
            return 101  # open (it answered the ping), nothing to say
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.reason == BUSY
            return closed.rcvd.code
    raise AssertionError("the socket sent a frame")


class _Writes:
    """One write of each kind the app sends (an entry, a like, a block), with the database's word on
    whether it happened."""

    def __init__(self, http: httpx.Client, replica: Replica, deps: ActivityDeps) -> None:
        author, fan = member(http), member(http)
        self.stranger = member(
            http
        ).nickname  # whom the fan blocks (not the author: the like must stay visible)
        self.year, self.deps = unique_year(), deps
        self.day = kst(self.year, 1, 1)
        assert author.save_feed(self.day).status_code == 200
        self.client = httpx.Client(base_url=replica.base, timeout=PATIENCE)
        self.author = IOSClient(self.client, author.access, author.refresh, author.email, author.nickname)
        self.fan = IOSClient(self.client, fan.access, fan.refresh, fan.email, fan.nickname)

    def requests(self) -> dict[str, Callable[[], httpx.Response]]:
        fan, author = self.fan, self.author
        return {
            "saveFeed": lambda: author.save_feed(kst(self.year, 1, 2)),
            "updateLike": lambda: like(fan, author.nickname, self.day),
            "block": lambda: fan.post_multipart(
                "/auth-service/block", [("srcNickname", fan.nickname), ("dstNickname", self.stranger)]
            ),
        }

    def written(self) -> dict[str, bool]:
        """What the database holds of the writes: the second day's entry, the like, the block."""
        liked = day_feed(self.author, self.author.nickname, self.day).json()["likeNicknameList"]
        with self.deps.sessions() as session:
            blocked = users.is_blocked(
                session, user_id(self.deps, self.fan.nickname), user_id(self.deps, self.stranger)
            )
        return {
            "saveFeed": feed_count(self.deps, self.author.nickname, self.year * 10000 + 102) == 1,
            "updateLike": self.fan.nickname in liked,
            "block": blocked,
        }


def _status(resp: httpx.Response) -> tuple[int, str, str | None]:
    """A response's status, reason and Retry-After."""
    return resp.status_code, resp.json().get("message", ""), resp.headers.get("Retry-After")


def _send_all(writes: _Writes, base: str) -> dict[str, Any]:
    """Every write and a DM handshake at once; each one's status, reason and Retry-After (the
    handshake's: 101 or its close code), or ``NO_ANSWER``."""

    def answer(request: Callable[[], httpx.Response]) -> tuple[int, str, str | None] | str:
        try:
            return _status(request())
        except httpx.TimeoutException:
            return NO_ANSWER

    def handshake() -> int | str:
        try:
            return _dm_handshake(writes.fan, base)
        except TimeoutError:
            return NO_ANSWER

    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(answer, request) for name, request in writes.requests().items()}
        socket = pool.submit(handshake)
        return {name: future.result() for name, future in futures.items()} | {"connect-dm": socket.result()}


def _assert_served(writes: _Writes, base: str) -> None:
    """The same writes and handshake, with a thread free: each served, and each write made."""
    served = _send_all(writes, base)
    assert {name: got[0] if isinstance(got, tuple) else got for name, got in served.items()} == {
        "saveFeed": 200,
        "updateLike": 200,
        "block": 200,
        "connect-dm": 101,
    }
    assert writes.written() == {"saveFeed": True, "updateLike": True, "block": True}


SHED = (503, BUSY, str(RETRY_AFTER_SECONDS))
ALL_SHED = {"saveFeed": SHED, "updateLike": SHED, "block": SHED, "connect-dm": TRY_AGAIN_LATER}


def test_requests_that_get_no_thread_in_time_are_shed_untouched_then_served(
    http: httpx.Client,
    replica: Replica,
    activity_deps: ActivityDeps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every request thread held by a request the test lets go: three writes and a DM handshake are
    shed (each counted by route), health and readiness answer, nothing is written; then all served."""
    writes = _Writes(http, replica, activity_deps)
    hold, held, release = member(http).nickname, threading.Semaphore(0), threading.Event()
    by_nickname = users.by_nickname

    def holding(session: Any, nickname: str) -> Any:
        if nickname == hold:  # a request that keeps its thread until the test lets it go
            held.release()
            assert release.wait(PATIENCE)
        return by_nickname(session, nickname)

    monkeypatch.setattr(users, "by_nickname", holding)
    before = _shed_counts()
    with ThreadPoolExecutor(THREADS) as pool:
        holders: list[Future[httpx.Response]] = [
            pool.submit(writes.fan.post_multipart, "/auth-service/findIntroduction", [("nickname", hold)])
            for _ in range(THREADS)
        ]
        try:
            for _ in range(THREADS):
                assert held.acquire(timeout=PATIENCE)
            assert _send_all(writes, replica.base) == ALL_SHED
            assert writes.client.get("/healthz").status_code == 200
            assert writes.client.get("/readyz").status_code == 200
        finally:
            release.set()
        assert [holder.result().status_code for holder in holders] == [200] * THREADS

    after = _shed_counts()
    assert {route: after[route] - before[route] for route in SHED_ROUTES} == dict.fromkeys(SHED_ROUTES, 1.0)
    assert writes.written() == {"saveFeed": False, "updateLike": False, "block": False}
    _assert_served(writes, replica.base)


def test_a_burst_during_a_mysql_stall_is_shed_instead_of_queued_then_served_after_it(
    http: httpx.Client, replica: Replica, activity_deps: ActivityDeps
) -> None:
    """MariaDB stops answering and the requests waiting for it take every thread: the burst behind them
    is shed, not queued, and writes nothing; once the server answers, the held requests are answered
    and the same burst is served. The test holds the server until it has seen the burst shed."""
    writes = _Writes(http, replica, activity_deps)
    before = _shed_counts()
    replica.proxy.hold()
    with ThreadPoolExecutor(THREADS) as pool:
        try:
            # Requests stuck on the silent server: each holds its thread until the test releases it.
            stuck = [
                pool.submit(
                    writes.fan.post_multipart,
                    "/auth-service/findIntroduction",
                    [("nickname", writes.author.nickname)],
                )
                for _ in range(THREADS)
            ]
            # Whatever takes a request thread now waits for the held server (a stuck request, or the
            # replica's outbox drainer or presence heartbeat): once all are taken, they stay so.
            wait_until(
                lambda: replica.threads.borrowed_tokens == THREADS,
                "every request thread busy",
                deadline_seconds=PATIENCE,
            )
            assert _send_all(writes, replica.base) == ALL_SHED
            assert replica.threads.borrowed_tokens == THREADS  # shed while the stall still held them
        finally:
            replica.proxy.release()
        # Held, not failed: each answered once the server answered (or shed, when a background task of
        # the replica, the outbox drainer or the presence heartbeat, took its thread first).
        assert {_status(request.result()) for request in stuck} <= {(200, "", None), SHED}

    after = _shed_counts()
    assert {route: after[route] - before[route] for route in SHED_ROUTES} == dict.fromkeys(SHED_ROUTES, 1.0)
    assert writes.written() == {"saveFeed": False, "updateLike": False, "block": False}
    _assert_served(writes, replica.base)


def test_no_dependency_takes_a_request_thread_before_the_route() -> None:
    """A sync dependency would be a request's first thread: the route's own work would then wait for a
    second one without a deadline (``api.deps``)."""

    def calls(dependant: Any) -> Iterator[Any]:
        for sub in dependant.dependencies:
            yield sub.call
            yield from calls(sub)

    def asynchronous(call: Any) -> bool:
        return (
            inspect.iscoroutinefunction(call)
            or inspect.isasyncgenfunction(call)
            or inspect.iscoroutinefunction(type(call).__call__)  # e.g. fastapi.security's header schemes
        )

    routes = [route for module in ROUTERS for route in module.router.routes if isinstance(route, APIRoute)]
    assert len(routes) > 20
    assert {
        f"{route.path}: {call.__name__}"
        for route in routes
        for call in calls(route.dependant)
        if not asynchronous(call)
    } == set()
