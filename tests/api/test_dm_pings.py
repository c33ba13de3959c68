"""A peer that sends WebSocket pings and never reads the pongs: uvicorn answers each at once, below the
app, so the DM frame limits never see them; the API's protocol (``api.dm_limits.DmWebSocketProtocol``,
what ``api.serve`` runs) drops the connection once the unread pongs pass a bound, instead of holding
them all in the replica's memory."""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlparse

import httpx
import pytest

from api.main import create_app
from api.serve import uvicorn_options
from config import Settings
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")
PING = 125  # the largest ping payload (a control frame's)
GIVE_UP_BYTES = 64 * 1024 * 1024  # far beyond the bound and any socket buffers between the two ends


@pytest.fixture(scope="module")
def api_served(settings: Settings, api_url: str) -> Iterator[str]:
    """The API in this process with the WebSocket protocol ``api.serve`` gives uvicorn."""
    options = uvicorn_options(settings)
    with serve_in_thread(
        create_app(settings), http="h11", ws=options["ws"], ws_per_message_deflate=False
    ) as url:
        yield url


def _upgraded(app: IOSClient, url: str) -> socket.socket:
    """A raw DM socket of ``app`` (upgraded, nothing read after the 101) with a small receive buffer."""
    where = urlparse(url)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting, so it holds
    raw.connect((where.hostname, where.port))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /dm-service/connect-dm?nickname={quote(app.nickname)} HTTP/1.1\r\nHost: api\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\nAuthorization: {app.access}\r\nemail: {app.email}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += raw.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


def test_a_peer_that_pings_without_reading_the_pongs_is_dropped(http: httpx.Client, api_served: str) -> None:
    app = IOSClient(http).sign_up("g" + uuid.uuid4().hex[:7])
    raw = _upgraded(app, api_served)
    mask = b"\x01\x02\x03\x04"
    ping = bytes([0x89, 0x80 | PING]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * PING))
    burst = ping * 1000
    raw.settimeout(60)  # a send blocked this long: the server stopped reading, which also bounds it
    sent = 0
    with pytest.raises(OSError), raw:  # reset (or broken pipe) once the server dropped the connection
        while sent < GIVE_UP_BYTES:
            raw.sendall(burst)
            sent += len(burst)
    assert sent < GIVE_UP_BYTES
