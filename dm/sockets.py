"""One open DM WebSocket of this replica: ordered sends through its own writer task, a server-side
close that wins once, and reads that stop at that close."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

from starlette.types import Message
from starlette.websockets import WebSocket

from dm.limits import SEND_QUEUE_CHARS, SLOW


class Socket:
    """One open DM WebSocket. Frames go out in order through its own writer task, so delivering never
    waits for the receiver: one that does not read (unsent frames over ``SEND_QUEUE_CHARS``, or a send
    not done within ``send_timeout``) is closed as ``SLOW`` and holds up nobody else."""

    _numbers = itertools.count()

    def __init__(self, websocket: WebSocket, send_timeout: float = 10.0, login: Any = None) -> None:
        self.websocket = websocket
        #: Who opened it (the API's ``AuthenticatedUser``; ``api.dm_logins`` closes the socket when that
        #: login ends). The DM package never reads it.
        self.login = login
        self.opened_at, self.seq = time.time(), next(Socket._numbers)
        #: The close code once the server ends the socket (set at once, before the close frame goes out):
        #: nothing is sent or read from then on.
        self.close_code: int | None = None
        self._timeout = send_timeout
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._queued_chars = 0
        self._closing = asyncio.Event()
        self._closed: asyncio.Future[Any] | None = None  # one waiter for every receive, not one each
        self._close_reason = ""
        self._writer = asyncio.ensure_future(self._write())

    async def send(self, text: str) -> bool:
        """Queue a text frame; False if the socket is closing or too far behind (it is closed then)."""
        if self._closing.is_set():
            return False
        if self._queued_chars + len(text) > SEND_QUEUE_CHARS:
            self.close(*SLOW)
            return False
        self._queued_chars += len(text)
        self._outbox.put_nowait(text)
        return True

    def close(self, code: int, reason: str) -> None:
        """Close from the server side (the first call wins): the reader stops at once, frames already
        queued go out, then the close frame."""
        if self._closing.is_set():
            return
        self.close_code, self._close_reason = code, reason
        self._closing.set()
        self._outbox.put_nowait(None)

    async def receive(self) -> Message:
        """The client's next ASGI message; a ``websocket.disconnect`` once the server closes the socket
        (a frame that arrives meanwhile is dropped)."""
        if not self._closing.is_set():
            if self._closed is None:
                self._closed = asyncio.ensure_future(self._closing.wait())
            receiving = asyncio.ensure_future(self.websocket.receive())
            await asyncio.wait({receiving, self._closed}, return_when=asyncio.FIRST_COMPLETED)
            if not self._closing.is_set():
                return receiving.result()
            receiving.cancel()
        return {"type": "websocket.disconnect", "code": self.close_code}

    async def finish(self) -> None:
        """After the reader stopped: let a server-side close go out (bounded), then stop the writer."""
        if self._closing.is_set():
            await asyncio.wait({self._writer}, timeout=self._timeout)
        self._writer.cancel()
        if self._closed is not None:
            self._closed.cancel()

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None and self.close_code != SLOW[0]:
            self._queued_chars -= len(text)
            try:
                async with asyncio.timeout(self._timeout):  # no task per frame, unlike wait_for
                    await self.websocket.send_text(text)
            except TimeoutError:  # the receiver does not read
                self.close(*SLOW)
                break
            except Exception:  # closed underneath us: the reader sees the disconnect
                return
        with contextlib.suppress(Exception):  # gone already, or too slow to take even the close frame
            await asyncio.wait_for(self.websocket.close(self.close_code or 1000, self._close_reason), 1)
