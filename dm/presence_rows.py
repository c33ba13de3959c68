"""This replica's rows of ``dm_presence``: how many DM sockets each of its users has open here, written
as sockets open and close, kept fresh by the heartbeat and forgotten when the replica stops.

The writes of one user never overlap: one task writes them, reading the count as it starts each, so two
sockets closing together cannot leave the count of the first behind the second's. A write that fails
is logged and written again on the next heartbeat (``rewrite_failed``); it never fails the socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from dm import presence

log = logging.getLogger(__name__)


async def in_transaction(engine: Engine, work: Callable[[Any], Any]) -> Any:
    """``work(conn)`` in one transaction on a request thread: its result."""

    def run() -> Any:
        with engine.begin() as conn:
            return work(conn)

    return await run_in_threadpool(run)


class PresenceRows:
    """Writes ``count(user_id)`` (the user's sockets on this replica) to the user's row of
    ``replica_id``."""

    def __init__(self, engine: Engine, replica_id: str, count: Callable[[int], int]) -> None:
        self._engine, self._replica_id, self._count = engine, replica_id, count
        #: Users whose row may not say this replica's count, and those whose last write failed.
        self._stale: set[int] = set()
        self._failed: set[int] = set()
        self._writers: dict[int, asyncio.Future[None]] = {}
        self._closing = False

    def writing(self, user_id: int) -> bool:
        """Whether a write of ``user_id``'s row is under way."""
        return user_id in self._writers

    async def record(self, user_id: int) -> None:
        """Write the user's count and return once a write that began after this call has ended (at
        once after ``close``: nothing is written then)."""
        if self._closing:
            return
        self._stale.add(user_id)
        writer = self._writers.get(user_id)
        if writer is None or writer.done():  # a finished writer's entry is dropped by its callback
            writer = asyncio.ensure_future(self._write(user_id))
            self._writers[user_id] = writer
            writer.add_done_callback(lambda done: self._forget_writer(user_id, done))
        await asyncio.shield(writer)

    async def rewrite_failed(self) -> None:
        """Write again every row whose last write failed, at once (not one after another: a slow store
        must not stretch the heartbeat past freshness)."""
        await asyncio.gather(*(self.record(u) for u in list(self._failed)))

    async def close(self) -> None:
        """Let the writes under way end, then forget every row of this replica; nothing is written
        after."""
        self._closing = True
        await asyncio.gather(*(asyncio.shield(w) for w in self._writers.values()), return_exceptions=True)
        try:
            await in_transaction(self._engine, lambda conn: presence.forget_replica(conn, self._replica_id))
        except Exception:
            log.warning("could not clear DM presence of %s", self._replica_id, exc_info=True)

    def _forget_writer(self, user_id: int, writer: asyncio.Future[None]) -> None:
        if self._writers.get(user_id) is writer:
            del self._writers[user_id]

    async def _write(self, user_id: int) -> None:
        while user_id in self._stale:
            self._stale.discard(user_id)
            count = self._count(user_id)

            def write(conn: Any, count: int = count) -> None:
                presence.set_sockets(conn, self._replica_id, user_id, count)

            try:
                await in_transaction(self._engine, write)
            except Exception:
                log.warning("DM presence of user %s not written; next heartbeat", user_id, exc_info=True)
                self._failed.add(user_id)
                return
            self._failed.discard(user_id)
