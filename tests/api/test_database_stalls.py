"""A MySQL server that goes silent (a partition, a hung host: nothing is closed) behind a replica: every
route class, the DM socket and readiness answer 503 with a reason within the app's patience, even
with more requests waiting than the pool has connections, and the same replica serves again once the
server answers (no restart, no stale-connection errors). The proxy stalls and resumes; the waits are
conditions with the app's own request timeout as their deadline, never a measured time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy.engine import make_url

from api.main import create_app
from config import Settings
from kst.dates import now_kst
from tests.api.dm_helpers import dm_socket
from tests.api.feed_helpers import day_feed, kst, like, member, unique_year
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient, code_verifier
from tests.fixtures.stalling_proxy import StallingProxy, stalling_proxy

#: The app gives up on a request after 60 s (URLSession's default; the ingress's read timeout too):
#: an answer later than this, less a margin, is one nobody reads.
APP_PATIENCE = 55.0
DATABASE_DOWN = "the database is unavailable, try again"


@pytest.fixture
def silent(settings: Settings) -> Iterator[tuple[StallingProxy, str]]:
    """A replica whose database is behind a stalling proxy, and its URL."""
    assert settings.database_url
    target = make_url(settings.database_url)
    with stalling_proxy(target.host or "127.0.0.1", target.port or 3306) as proxy:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        app = create_app(settings.model_copy(update={"database_url": url}))
        with serve_in_thread(app, http="h11", ws="websockets-sansio") as base:
            yield proxy, base


def _requests(author: IOSClient, fan: IOSClient, day: int, verifier: str, code: str) -> dict[str, Callable]:
    """One request of each class the app sends, by name (each returns its response)."""
    http = fan.http
    return {
        "getAuthorizeCode": lambda: http.post(
            "/auth-service/getAuthorizeCode", files={"codeChallenge": (None, "0" * 128)}
        ),
        "signIn": lambda: IOSClient(http).present_code(code, verifier, f"s{code[:8]}@gmail.com"),
        "reIssueToken": author.reissue,
        "findDayFeed": lambda: day_feed(fan, author.nickname, day),
        "saveFeed": lambda: author.save_feed(day + 10**10),  # the next day's entry
        "updateLike": lambda: like(fan, author.nickname, day),
        "findDirectMessage": lambda: fan.post_multipart(
            "/dm-service/findDirectMessage",
            [("sender", fan.nickname), ("receiver", author.nickname), ("timeBoundary", str(now_kst()))],
        ),
        "findMultipleDirectMessage": lambda: fan.post_multipart(
            "/dm-service/findMultipleDirectMessage", [("sender", fan.nickname)]
        ),
        "readyz": lambda: http.get("/readyz"),
    }


def _answers(requests: dict[str, Callable]) -> dict[str, tuple[int, str] | str]:
    """Every request at once: each one's status and reason (or why there was none)."""

    def one(request: Callable) -> tuple[int, str] | str:
        try:
            resp = request()
        except httpx.TimeoutException:
            return "no answer within the app's patience"
        body = resp.json() if resp.content else None
        if not isinstance(body, dict):
            return resp.status_code, ""
        return resp.status_code, str(body.get("message", body.get("status", "")))

    with ThreadPoolExecutor(len(requests)) as pool:
        futures = {name: pool.submit(one, request) for name, request in requests.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_route_answers_503_within_the_apps_patience_while_mysql_is_silent_then_serves_again(
    http: httpx.Client, silent: tuple[StallingProxy, str]
) -> None:
    proxy, base = silent
    author, fan, year = member(http), member(http), unique_year()
    day = kst(year, 1, 1)
    assert author.save_feed(day).status_code == 200
    with httpx.Client(base_url=base, timeout=APP_PATIENCE) as replica:
        author = IOSClient(replica, author.access, author.refresh, author.email, author.nickname)
        fan = IOSClient(replica, fan.access, fan.refresh, fan.email, fan.nickname)
        verifier = code_verifier()
        code = IOSClient(replica).authorize_code(verifier)
        with dm_socket(fan, base, APP_PATIENCE) as ws:
            proxy.stall()
            frame = {"sender": fan.nickname, "receiver": author.nickname, "text": "안녕", "date": now_kst()}
            ws.send(json.dumps(frame, ensure_ascii=False))
            # The socket answers the frame it could not store, and stays open.
            refused = json.loads(ws.recv(timeout=APP_PATIENCE))
            assert refused["error"] == "the message could not be stored; try again"
        answers = _answers(_requests(author, fan, day, verifier, code))
        assert replica.get("/healthz").json() == {"status": "ok"}

        expected = {name: (503, DATABASE_DOWN) for name in answers} | {"readyz": (503, "unavailable")}
        assert answers == expected

        proxy.resume()  # the server answers again: the same replica serves, the first time asked
        verifier = code_verifier()
        code = IOSClient(replica).authorize_code(verifier)
        back = _answers(_requests(author, fan, day, verifier, code))
    assert {name: got if isinstance(got, str) else got[0] for name, got in back.items()} == {
        name: 200 for name in back
    }
