"""MongoDB refusing connections, then silent (a partition, a hung host: nothing is closed), then losing
its answers (the partition falls after a request arrived), each time coming back, behind a running
replica: a DM over the socket is answered with the error frame and the socket stays open, the history
answers 503 with a reason within the app's patience, the room list (SQL only) still answers,
``/readyz`` says ``degraded``, nothing is stored half and the receiver gets nothing that was not
stored; once MongoDB answers, the same replica serves again. The proxies refuse, stall, lose answers
and resume; the waits are conditions with generous deadlines, never a measured time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.sync.client import ClientConnection

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from dm import rooms
from kst.dates import now_kst
from tests.api.dm_helpers import dm_socket
from tests.api.feed_helpers import member
from tests.api.test_database_stalls import APP_PATIENCE
from tests.dm.helpers import party, room_page
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient
from tests.fixtures.refusing_proxy import RefusingProxy
from tests.fixtures.stalling_proxy import StallingProxy
from tests.fixtures.waiting import wait_until

NOT_STORED = "the message could not be stored; try again"
MONGO_DOWN = "mongodb is unavailable"


@dataclass
class Outage:
    """A replica whose MongoDB is behind a refusing proxy in front of a stalling one."""

    refusing: RefusingProxy
    stalling: StallingProxy
    base: str


def _mongo_behind(settings: Settings, port: int) -> Settings:
    """``settings`` with MongoDB reached through a proxy on ``port``."""
    target = urlsplit(settings.mongo_url)
    # directConnection: only the proxy, not the members the server names in its hello.
    query = "&".join(q for q in (target.query, "directConnection=true") if q)
    url = target._replace(netloc=f"127.0.0.1:{port}", query=query).geturl()
    return settings.model_copy(update={"mongo_url": url})


def _stalling_mongo(settings: Settings) -> StallingProxy:
    target = urlsplit(settings.mongo_url)
    return StallingProxy(target.hostname or "127.0.0.1", target.port or 27017)


@pytest.fixture
def outage(settings: Settings) -> Iterator[Outage]:
    stalling = _stalling_mongo(settings)
    refusing = RefusingProxy("127.0.0.1", stalling.port)
    try:
        app = create_app(_mongo_behind(settings, refusing.port))
        with serve_in_thread(app, http="h11", ws="websockets-sansio") as base:
            yield Outage(refusing, stalling, base)
    finally:
        refusing.close()
        stalling.close()


def _send(ws: ClientConnection, sender: IOSClient, receiver: IOSClient, text: str) -> str:
    frame = json.dumps(
        {"sender": sender.nickname, "receiver": receiver.nickname, "text": text}, ensure_ascii=False
    )
    ws.send(frame)
    return frame


def _answer(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    return response.status_code, body.get("message", "") if isinstance(body, dict) else ""


def _history(app: IOSClient, other: IOSClient) -> httpx.Response:
    fields = [
        ("sender", app.nickname),
        ("receiver", other.nickname),
        ("timeBoundary", str(now_kst() + 10**6)),
    ]
    return app.post_multipart("/dm-service/findDirectMessage", fields)


def _room_list(app: IOSClient) -> httpx.Response:
    return app.post_multipart("/dm-service/findMultipleDirectMessage", [("sender", app.nickname)])


def test_a_replica_rides_out_mongodb_refusing_silent_and_losing_answers_and_serves_again(
    http: httpx.Client, activity_deps: ActivityDeps, outage: Outage
) -> None:
    fan, author = member(http), member(http)
    with httpx.Client(base_url=outage.base, timeout=APP_PATIENCE) as replica:
        fan = IOSClient(replica, fan.access, fan.refresh, fan.email, fan.nickname)
        author = IOSClient(replica, author.access, author.refresh, author.email, author.nickname)
        with (
            dm_socket(fan, outage.base, APP_PATIENCE) as sender,
            dm_socket(author, outage.base, APP_PATIENCE) as receiver,
        ):
            _send(sender, fan, author, "before")
            assert json.loads(receiver.recv(timeout=APP_PATIENCE))["text"] == "before"
            a, b = party(activity_deps, fan.nickname), party(activity_deps, author.nickname)
            with activity_deps.engine.connect() as conn:
                last = rooms.latest_date(conn, a.id, b.id)

            for fault, down, up in (
                ("refusing", outage.refusing.refuse, outage.refusing.resume),
                ("silent", outage.stalling.stall, outage.stalling.resume),
                # The insert reaches MongoDB, its answer does not: the document is stored, and must go.
                ("answers lost", outage.stalling.lose_answers, outage.stalling.resume),
            ):
                down()
                frame = _send(sender, fan, author, f"while {fault}")
                # The sender hears why, and the socket stays open (the next frame is answered too).
                assert json.loads(sender.recv(timeout=APP_PATIENCE)) == {
                    "error": NOT_STORED,
                    "frame": frame,
                }, fault
                assert _answer(_history(fan, author)) == (503, MONGO_DOWN), fault
                listed = _room_list(fan)  # the room list is SQL only: it still answers, unchanged
                assert listed.status_code == 200 and [m["text"] for m in listed.json()] == ["before"], fault
                assert replica.get("/readyz").json() == {"status": "degraded"}, fault
                up()
                # MongoDB is back: the same replica reads again, without a restart.
                wait_until(lambda: _history(fan, author).status_code == 200, f"reads after {fault}")

            # Nothing was stored half: the room row did not move.
            with activity_deps.engine.connect() as conn:
                assert rooms.latest_date(conn, a.id, b.id) == last

            # And stores and delivers again.
            _send(sender, fan, author, "after")
            # The receiver's next frame is this one: nothing that was refused reached it.
            assert json.loads(receiver.recv(timeout=APP_PATIENCE))["text"] == "after"
        # No document was left behind: the room's next message does not bring a refused one to light.
        history = _history(fan, author)
        assert history.status_code == 200 and [m["text"] for m in history.json()] == ["before", "after"]
        assert [m["text"] for m in room_page(activity_deps, fan.nickname, author.nickname)] == [
            "before",
            "after",
        ]
        assert replica.get("/readyz").json() == {"status": "ok"}


def _few_threads(app: Any, workers: int) -> Any:
    """``app`` on an event loop whose default executor (``asyncio.to_thread``) has ``workers`` threads,
    as on a small node (Python gives it ``min(32, CPUs + 4)``)."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(workers))
        await app(scope, receive, send)

    return served


def test_readiness_stays_degraded_while_mongodb_is_silent(settings: Settings) -> None:
    """Each probe's MongoDB ping gives up with the probe (``READY_CHECK_SECONDS``) instead of holding
    a thread of the loop's default executor until the client notices the silence (20 to 30 s): the
    database check, which needs one of those threads too, was starved after a few probes and the
    replica reported ``unavailable``: every replica at once, MongoDB being shared."""
    stalling = _stalling_mongo(settings)
    try:
        app = _few_threads(create_app(_mongo_behind(settings, stalling.port)), workers=2)
        with (
            serve_in_thread(app, http="h11") as base,
            httpx.Client(base_url=base, timeout=APP_PATIENCE) as replica,
        ):
            assert replica.get("/readyz").json() == {"status": "ok"}  # a pooled connection to MongoDB
            stalling.stall()
            probes = [replica.get("/readyz") for _ in range(4)]  # the kubelet asks every 5 s
    finally:
        stalling.close()
    assert [(p.status_code, p.json()) for p in probes] == [(200, {"status": "degraded"})] * 4
