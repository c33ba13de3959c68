"""Direct messages between users on any API replica: checked, stored, then delivered exactly once.

Each replica keeps its own users' sockets (a user may hold several: phone and tablet). A message is
written to MongoDB first; then the receiver's sockets on this replica get the frame at once, the
replicas that hold other sockets of the receiver get it through the Kafka topic every replica reads
(``dm_presence`` in the database says which do), and a receiver with no socket anywhere gets a DM push.
Records a replica published itself are skipped when they come back, so nobody gets a message twice.
With the broker down, messages are still stored, delivered on this replica and pushed otherwise.

The hub imports nothing of the API process: the API hands it its database engine, message store,
settings, the broadcast topic between replicas (``api.kafka.TopicBroadcast``) and how to start a push.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from config import Settings
from dm import presence
from dm import rooms as dm_rooms
from dm.frames import FrameRefused, error_frame, parse_frame
from dm.messages import MessageStore, Party, StoredMessage
from storage import users

log = logging.getLogger(__name__)

DELIVERED = Counter(
    "sosohappy_dm_delivered_total", "Direct messages delivered, by path", ["path"]
)  # local | cross_replica | pushed
REFUSED = Counter("sosohappy_dm_refused_total", "DM frames refused, by reason", ["reason"])
OPEN_WEBSOCKETS = Gauge("sosohappy_open_websockets", "DM WebSockets currently open on this replica")

#: Starts the DM push of one stored message: ``(sender id, receiver id, message id)``, fire-and-forget.
StartPush = Callable[[int, int, str], None]


class ReplicaBroadcast(Protocol):
    """The topic every API replica reads, for frames whose receiver is connected elsewhere."""

    async def publish(self, key: bytes, value: bytes) -> bool:
        """Publish one record within a bounded wait; False when no broker is connected, raises when
        the broker does not take it."""
        ...

    async def follow(self, handle: Callable[[bytes], Awaitable[None]]) -> None:
        """Hand every record published from now on to ``handle``, reconnecting after broker loss,
        until cancelled."""
        ...


class Socket:
    """One open DM WebSocket; sends are serialised because ASGI sends must not overlap."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()

    async def send(self, text: str) -> bool:
        """Send a text frame; False if the socket is gone."""
        async with self._lock:
            try:
                await self.websocket.send_text(text)
                return True
            except Exception:  # closed underneath us: the reader will detach it
                return False


class DirectMessageHub:
    """The DM sockets of one API replica and the routing of messages to them, to other replicas or to push."""

    def __init__(
        self,
        engine: Engine,
        messages: MessageStore,
        settings: Settings,
        broadcast: ReplicaBroadcast,
        start_push: StartPush,
    ) -> None:
        self._engine, self._messages, self._settings = engine, messages, settings
        self._broadcast, self._start_push = broadcast, start_push
        self.replica_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sockets: dict[int, set[Socket]] = {}

    async def attach(self, user_id: int, sock: Socket) -> None:
        """Register a newly accepted socket of ``user_id``."""
        self._sockets.setdefault(user_id, set()).add(sock)
        OPEN_WEBSOCKETS.inc()
        await self._record_presence(user_id)

    async def detach(self, user_id: int, sock: Socket) -> None:
        """Forget a closed socket (only that one: the user's other sockets stay)."""
        mine = self._sockets.get(user_id, set())
        if sock in mine:
            mine.discard(sock)
            OPEN_WEBSOCKETS.dec()
        if not mine:
            self._sockets.pop(user_id, None)
        await self._record_presence(user_id)

    async def _record_presence(self, user_id: int) -> None:
        count = len(self._sockets.get(user_id, ()))
        await self._in_transaction(lambda conn: presence.set_sockets(conn, self.replica_id, user_id, count))

    async def _in_transaction(self, work: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with self._engine.begin() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    async def deliver_local(self, user_id: int, frame: str) -> int:
        """Send ``frame`` to every socket ``user_id`` has on this replica; how many got it."""
        targets = list(self._sockets.get(user_id, ()))
        sent = await asyncio.gather(*(s.send(frame) for s in targets))
        return sum(sent)

    async def relay(self, user_id: int, nickname: str, websocket: WebSocket) -> None:
        """Serve an accepted socket of ``user_id`` (who connected as ``nickname``) until it closes: every
        text frame is handled; a refused or failed one is answered with an error frame and the socket
        stays open."""
        sock = Socket(websocket)
        await self.attach(user_id, sock)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    REFUSED.labels("binary").inc()
                    await sock.send(error_frame("frames must be text (JSON)", ""))
                    continue
                try:
                    await self.handle(user_id, nickname, raw)
                except FrameRefused as refused:
                    REFUSED.labels(refused.code).inc()
                    await sock.send(error_frame(refused.reason, raw))
                except Exception:
                    log.exception("DM from user %s failed", user_id)
                    REFUSED.labels("unavailable").inc()
                    await sock.send(error_frame("the message could not be stored; try again", raw))
        finally:
            await self.detach(user_id, sock)

    async def handle(self, sender_id: int, sender: str, raw: str) -> None:
        """Check, store and deliver one frame from user ``sender_id`` (connected as ``sender``);
        ``FrameRefused`` if it cannot be sent. The receiver is the user holding the frame's nickname
        now; the message is stored under both ids and delivered with both current nicknames."""
        receiver, date, text = parse_frame(raw, sender)

        def accept(conn: Any) -> tuple[int, StoredMessage, str, bool]:
            found = users.current_nicknames(conn, ids=[sender_id], nicknames=[receiver])
            own = found.get(sender_id)
            if own is None:
                raise FrameRefused("your account has no nickname any more", "sender")
            receiver_id = next((uid for uid, name in found.items() if name == receiver), None)
            if receiver_id is None:
                raise FrameRefused(f"there is no user {receiver!r}", "receiver")
            if receiver_id == sender_id:
                raise FrameRefused("you cannot message yourself", "receiver")
            if users.is_blocked(conn, receiver_id, sender_id):
                raise FrameRefused(f"{receiver} does not accept your messages", "blocked")
            stored = self._messages.insert(Party(sender_id, own), Party(receiver_id, receiver), date, text)
            dm_rooms.record_message(conn, sender_id, receiver_id, stored)
            fresh = self._settings.dm_presence_fresh_seconds
            elsewhere = presence.connected_elsewhere(conn, receiver_id, self.replica_id, fresh)
            frame = stored.dto({sender_id: own, receiver_id: receiver}).model_dump_json()
            return receiver_id, stored, frame, elsewhere

        receiver_id, stored, frame, elsewhere = await self._in_transaction(accept)
        if await self.deliver_local(receiver_id, frame):
            DELIVERED.labels("local").inc()
        elif not elsewhere:
            self._push(sender_id, receiver_id, stored)
            return
        if elsewhere and not await self._publish(stored, receiver_id, frame):
            if receiver_id not in self._sockets:  # nobody got it live: notify instead
                self._push(sender_id, receiver_id, stored)

    def _push(self, sender_id: int, receiver_id: int, stored: StoredMessage) -> None:
        self._start_push(sender_id, receiver_id, stored.id)
        DELIVERED.labels("pushed").inc()

    async def _publish(self, stored: StoredMessage, receiver_id: int, frame: str) -> bool:
        record = {"origin": self.replica_id, "receiver_id": receiver_id, "id": stored.id, "frame": frame}
        try:
            return await self._broadcast.publish(
                str(receiver_id).encode(), json.dumps(record, ensure_ascii=False).encode()
            )
        except Exception:
            log.warning("DM %s not broadcast: Kafka unavailable", stored.id, exc_info=True)
            return False

    async def follow(self) -> None:
        """Deliver the messages other replicas publish for this replica's sockets, from the end of the
        topic; reconnect after broker loss."""
        await self._broadcast.follow(self._deliver_record)

    async def _deliver_record(self, value: bytes) -> None:
        try:
            record = json.loads(value)
            if record["origin"] == self.replica_id:
                return  # published here, already delivered to this replica's sockets
            if await self.deliver_local(int(record["receiver_id"]), str(record["frame"])):
                DELIVERED.labels("cross_replica").inc()
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed DM record")

    async def heartbeat(self) -> None:
        """Keep this replica's presence rows fresh while it lives."""
        while True:
            await asyncio.sleep(self._settings.dm_heartbeat_seconds)
            try:
                await self._in_transaction(lambda conn: presence.heartbeat(conn, self.replica_id))
            except Exception:
                log.warning("DM presence heartbeat failed", exc_info=True)

    async def close(self) -> None:
        """Forget this replica's presence (its sockets close with the process)."""
        try:
            await self._in_transaction(lambda conn: presence.forget_replica(conn, self.replica_id))
        except Exception:
            log.warning("could not clear DM presence of %s", self.replica_id, exc_info=True)
