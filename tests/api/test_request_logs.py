"""One JSON log line per HTTP request and per WebSocket, with its request id, caller and workflow, and
never a token, a secret, a header or a query string."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
from sqlalchemy import select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from activities.deps import ActivityDeps
from api.request_context import RequestContextFilter
from config import Settings
from storage.models import Feed, User
from temporal.ids import like_push_workflow_id, sign_in_workflow_id
from tests.api.feed_helpers import kst, like, member, unique_year, user_id
from tests.fixtures.ios_client import IOSClient, code_challenge, code_verifier
from tests.fixtures.logins import reissue_twice
from tests.fixtures.logs import CapturedLogs, captured_logs

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    """The JSON lines logged while the test runs, request fields added as in the API process."""
    with captured_logs(RequestContextFilter()) as captured:
        yield captured


def _request_line(logs: CapturedLogs, resp: httpx.Response) -> dict[str, Any]:
    """The one ``http_request`` line of the request that got ``resp``."""
    [line] = logs.wait_for(event="http_request", request_id=resp.headers["X-Request-ID"])
    return line


def test_sign_in_writes_one_line_per_request_naming_workflow_and_user(
    http: httpx.Client, logs: CapturedLogs, settings: Settings, activity_deps: ActivityDeps
) -> None:
    app = IOSClient(http)
    verifier = code_verifier()
    code_resp = app.post_multipart(
        "/auth-service/getAuthorizeCode", [("codeChallenge", code_challenge(verifier))], authed=False
    )
    code = code_resp.json()["authorizeCode"]
    email = f"l{uuid.uuid4().hex[:10]}@gmail.com"
    sign_in = app.post_multipart(
        "/auth-service/signIn",
        [
            ("email", email),
            ("provider", "kakao"),
            ("providerId", "271828"),
            ("codeVerifier", verifier),
            ("authorizeCode", code),
            ("authorizationCode", ""),
            ("deviceToken", app.device_token),
        ],
        authed=False,
    )
    assert sign_in.status_code == 200, sign_in.text
    app.store_tokens(sign_in)
    app.email = sign_in.headers["email"]
    check = app.get_query("/auth-service/checkDuplicateNickname", {"nickname": "q-secret-n"})
    assert check.status_code == 200

    with activity_deps.sessions() as s:
        uid = s.scalars(select(User.id).where(User.account_email == app.email)).one()

    first = _request_line(logs, code_resp)
    assert {k: first[k] for k in ("method", "route", "path", "status")} == {
        "method": "POST",
        "route": "/auth-service/getAuthorizeCode",
        "path": "/auth-service/getAuthorizeCode",
        "status": 200,
    }
    assert "user_id" not in first and "workflow_id" not in first
    assert first["client_ip"] == "127.0.0.1" and first["duration_ms"] >= 0
    assert first["level"] == "INFO" and first["logger"] == "api.requests" and first["ts"].endswith("Z")

    signed = _request_line(logs, sign_in)
    assert signed["route"] == "/auth-service/signIn" and signed["status"] == 200
    assert signed["workflow_id"] == sign_in_workflow_id(code) and code not in signed["workflow_id"]
    assert signed["user_id"] == uid

    checked = _request_line(logs, check)
    assert checked["route"] == "/auth-service/checkDuplicateNickname"
    assert checked["path"] == "/auth-service/checkDuplicateNickname"  # no query string
    assert checked["method"] == "GET" and checked["status"] == 200 and checked["user_id"] == uid
    assert "workflow_id" not in checked

    text = logs.text
    for secret in (
        app.access.removeprefix("Bearer "),
        app.refresh.removeprefix("Bearer "),
        settings.jwt_secret,
        verifier,
        code,
        "q-secret-n",
        app.device_token,
    ):
        assert secret not in text


def test_a_sane_request_id_is_kept_and_anything_else_replaced(http: httpx.Client, logs: CapturedLogs) -> None:
    kept = http.get("/healthz", headers={"X-Request-ID": "edge-7f3a.b_C"})
    assert kept.headers["X-Request-ID"] == "edge-7f3a.b_C"
    assert _request_line(logs, kept)["route"] == "/healthz"

    for bad in ("has spaces", "x" * 129, 'quote"d', "newline%0a"):
        resp = http.get("/healthz", headers={"X-Request-ID": bad})
        new = resp.headers["X-Request-ID"]
        assert new != bad and len(new) == 32 and int(new, 16) >= 0
        assert _request_line(logs, resp)["status"] == 200
    assert logs.lines(event="http_request", request_id="has spaces") == []

    missing = http.get("/no/such/route", params={"token": "should-not-appear"})
    line = _request_line(logs, missing)
    assert (line["route"], line["path"], line["status"]) == ("unmatched", "/no/such/route", 404)
    assert "should-not-appear" not in logs.text


def test_the_request_id_header_is_added_without_touching_the_others(api_url: str) -> None:
    url = urlparse(api_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: raw-1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"
    assert b"X-Request-ID: raw-1" in head
    assert b"content-type: application/json" in head  # Starlette's own headers keep their spelling


def test_a_like_names_the_push_workflow_it_starts(
    http: httpx.Client, logs: CapturedLogs, activity_deps: ActivityDeps
) -> None:
    author, fan = member(http), member(http)
    date = kst(unique_year(), 3, 14)
    assert author.save_feed(date).status_code == 200
    liked = like(fan, author.nickname, date)
    assert liked.status_code == 200 and liked.json() == {"like": True}
    with activity_deps.sessions() as s:
        feed_id = s.scalars(
            select(Feed.id).where(Feed.user_id == user_id(activity_deps, author.nickname))
        ).one()
    line = _request_line(logs, liked)
    assert line["route"] == "/feed-service/updateLike"
    assert line["user_id"] == user_id(activity_deps, fan.nickname)
    assert line["workflow_id"] == like_push_workflow_id(feed_id, user_id(activity_deps, fan.nickname))


def test_lines_written_during_a_request_carry_its_id(
    http: httpx.Client, logs: CapturedLogs, settings: Settings, activity_deps: ActivityDeps
) -> None:
    app = IOSClient(http)
    assert app.sign_in(f"r{uuid.uuid4().hex[:10]}@gmail.com").status_code == 200
    stolen = app.refresh
    # Two rotations: the stolen token is older than the one just rotated, so it is reuse at once.
    reissue_twice(activity_deps, app, settings.refresh_reuse_grace_seconds)
    thief = IOSClient(http, access=app.access, refresh=stolen, email=app.email)
    replay = thief.http.get(
        "/auth-service/reIssueToken",
        headers={"Authorization-refresh": stolen, "Email": app.email, "X-Request-ID": "replay-1"},
    )
    assert replay.status_code == 403
    [warning] = logs.lines(logger="api.routes.auth", request_id="replay-1")
    assert warning["level"] == "WARNING" and "refresh token reuse" in warning["msg"]
    assert _request_line(logs, replay)["status"] == 403
    assert stolen.removeprefix("Bearer ") not in logs.text


def test_a_websocket_gets_one_line_when_it_closes(
    http: httpx.Client, api_url: str, logs: CapturedLogs, activity_deps: ActivityDeps
) -> None:
    me = member(http)
    addr = urlparse(api_url).netloc
    tag = uuid.uuid4().hex[:8]
    headers = {"Authorization": me.access, "email": me.email, "X-Request-ID": f"ws-{tag}"}
    with connect(
        f"ws://{addr}/dm-service/connect-dm?nickname={me.nickname}",
        additional_headers=headers,
        open_timeout=10,
    ) as ws:
        assert ws.response is not None and ws.response.headers["X-Request-ID"] == f"ws-{tag}"
        ws.close(code=1000)
    refused_headers = {"X-Request-ID": f"ws-refused-{tag}"}
    with pytest.raises(InvalidStatus) as refused_status:
        connect(f"ws://{addr}/dm-service/connect-dm", additional_headers=refused_headers, open_timeout=10)
    assert refused_status.value.response.status_code == 403

    line = _wait_for_line(logs, event="websocket", request_id=f"ws-{tag}")
    assert line["route"] == "/dm-service/connect-dm" and line["path"] == "/dm-service/connect-dm"
    assert line["user_id"] == user_id(activity_deps, me.nickname)
    assert line["accepted"] is True and line["close_code"] == 1000 and line["duration_ms"] > 0
    refused = _wait_for_line(logs, event="websocket", request_id=f"ws-refused-{tag}")
    assert refused["accepted"] is False and refused["close_code"] == 1008 and "user_id" not in refused
    assert me.access.removeprefix("Bearer ") not in logs.text
    # The query names the user: no line carries it (uvicorn's handshake lines: tests/config/test_logging.py).
    assert me.nickname not in logs.text and "nickname=" not in logs.text


def _wait_for_line(logs: CapturedLogs, **match: Any) -> dict[str, Any]:
    """The single line matching ``match``, once the server has written it (a close ends asynchronously)."""
    [line] = logs.wait_for(**match)
    return line
