"""How often one user may open DM sockets on a replica (``api.dm_limits.ConnectGate``): a client that
opens and closes sockets in a loop is closed with 1013 at the handshake once past the burst, before
any presence is written or broadcast for it; other users are not affected, and the bucket refills."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from api.main import create_app
from config import Settings
from tests.api.dm_helpers import dm_socket
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.clock import FakeClock
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")
BURST, PER_MINUTE = 3, 6  # one socket every 10 s of the fake clock after the burst


@pytest.fixture(scope="module")
def replica(settings: Settings, api_url: str) -> Iterator[tuple[str, FakeClock, list[int]]]:
    """An API replica in this process on a fake clock, with a small connect burst, and the user ids of
    the sockets its hub was handed (whose presence it writes and broadcasts)."""
    clock = FakeClock()
    limited = settings.model_copy(update={"dm_connect_burst": BURST, "dm_connects_per_minute": PER_MINUTE})
    app = create_app(limited, clock=clock)
    with serve_in_thread(app, http="h11", ws="websockets-sansio", ws_per_message_deflate=False) as url:
        hub, served = app.state.dm_hub, []
        relay = hub.relay

        def counted(user_id: int, *args: Any) -> Any:
            served.append(user_id)
            return relay(user_id, *args)

        hub.relay = counted
        yield url, clock, served


def _member(http: httpx.Client) -> IOSClient:
    return IOSClient(http).sign_up("c" + uuid.uuid4().hex[:7])


def _refused(app: IOSClient, url: str) -> str:
    """The close reason of a socket the replica closes at once (fails if it stays open)."""
    with dm_socket(app, url, 10) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=60)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    return closed.value.rcvd.reason


def _served(app: IOSClient, url: str) -> None:
    """``app`` gets a socket the hub serves (a bad frame is answered)."""
    with dm_socket(app, url, 10) as ws:
        ws.send("not json")
        assert "not JSON" in json.loads(ws.recv(timeout=60))["error"]


def test_a_user_reconnecting_in_a_loop_is_closed_with_1013_past_the_burst(
    http: httpx.Client, replica: tuple[str, FakeClock, list[int]]
) -> None:
    url, clock, served = replica
    looping, other = _member(http), _member(http)
    for _ in range(BURST):
        with dm_socket(looping, url, 10):
            pass
    assert "too many sockets opened; retry in 10 s" in _refused(looping, url)
    assert len(served) == BURST  # the refused one never reached the hub: no presence, no broadcast
    _served(other, url)  # per user
    clock.now += 60 / PER_MINUTE
    _served(looping, url)
