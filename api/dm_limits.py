"""Admission of the DM socket's incoming frames: size and rate per socket (``FrameGate``), and of its
handshakes: how often a user may open one (``ConnectGate``), on the API's rate limiter; the pongs a
peer leaves unread (``DmWebSocketProtocol``, the API's uvicorn WebSocket protocol); the close codes
and the other socket limits are ``dm.limits``.

The limits are settings (``config.settings``, README "Direct messages"). The gate runs on an injected
clock, so tests count frames instead of waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import Counter
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from api.rate_limits import MAX_TRACKED_CLIENTS, RateLimiter
from config import Settings
from dm.limits import FLOODING, TOO_BIG, Refusal

#: Bytes a connection may have waiting to go out when it answers a ping (above the transport's 64 KiB
#: high-water mark, where the app's own sends already wait): more, and the peer is not reading its pongs.
PONG_BACKLOG_BYTES = 256 * 1024

PING_FLOODS = Counter(
    "sosohappy_dm_ping_floods_total", "WebSocket connections dropped for pings whose pongs went unread"
)
CONNECTS_REFUSED = Counter(
    "sosohappy_dm_connects_refused_total", "DM handshakes closed at once: the user opened sockets too often"
)


class FrameGate:
    """Admission of one socket's incoming frames: at most ``dm_max_frame_bytes`` each, at most
    ``dm_frame_rate_per_second`` after a burst of ``dm_frame_burst``; a socket with more than
    ``dm_frame_strikes`` refused frames, one forgiven per second, is closed (FLOODING)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = settings.dm_max_frame_bytes
        self._rate = settings.dm_frame_rate_per_second
        self._frames = RateLimiter(self._rate * 60, settings.dm_frame_burst, clock, max_keys=1)
        self._strikes = RateLimiter(60, settings.dm_frame_strikes, clock, max_keys=1)

    def admit(self, message: Mapping[str, Any]) -> Refusal | None:
        """``None`` when the ASGI ``websocket.receive`` message may be handled, else the refusal. Runs
        before anything is parsed, so a refused frame costs next to nothing."""
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode()) if text is not None else len(data or b"")
        if size > self.max_bytes:
            return Refusal(f"frames must be at most {self.max_bytes} bytes", "too_big", TOO_BIG)
        if self._frames.acquire("") == 0:
            return None
        if self._strikes.acquire("") > 0:
            return Refusal("too many frames; the socket is closed", "flooding", FLOODING)
        return Refusal(f"too many frames: at most {self._rate:g} a second", "rate")


class ConnectGate:
    """How often one user may open a DM socket on this replica: ``dm_connect_burst`` at once, then
    ``dm_connects_per_minute``. Each socket costs its presence writes, a presence read and two
    broadcasts as it opens and closes, and the socket cap only closes the oldest: without this, a
    client opening and closing sockets in a loop made those at the rate of its round trips."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        burst, per_minute = settings.dm_connect_burst, settings.dm_connects_per_minute
        self._opens = RateLimiter(per_minute, burst, clock, max_keys=MAX_TRACKED_CLIENTS)

    def refusal(self, user_id: int) -> str | None:
        """``None`` when ``user_id`` may open one more socket now (counted), else why not."""
        wait = self._opens.acquire(str(user_id))
        if wait == 0:
            return None
        CONNECTS_REFUSED.inc()
        return f"too many sockets opened; retry in {max(1, math.ceil(wait))} s"


class DmWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (``ws="websockets-sansio"``) with a bound on pongs. It
    answers every ping at once, with no flow control, and pings never reach the app, so no frame limit
    sees them: a peer sending pings without reading the pongs grew the replica's memory by what it
    sent (26 MB in 3 s from one socket). Once more than ``PONG_BACKLOG_BYTES`` wait to go out after a
    pong, the connection is dropped (aborted: a peer that does not read would never see a close frame,
    and its buffered pongs are freed at once); the app sees the disconnect as from any lost peer."""

    def handle_ping(self) -> None:
        super().handle_ping()
        if self.transport.get_write_buffer_size() > PONG_BACKLOG_BYTES:
            PING_FLOODS.inc()
            self.transport.abort()
