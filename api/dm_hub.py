"""Direct messages between users on any API replica: checked, stored, then delivered exactly once.

Each replica keeps its own users' sockets (a user may hold several: phone and tablet). A message is
written to MongoDB first; then the receiver's sockets on this replica get the frame at once, the
replicas that hold other sockets of the receiver get it through the Kafka topic every replica reads
(``dm_presence`` in the database says which do), and a receiver with no socket anywhere gets a DM push.
Records a replica published itself are skipped when they come back, so nobody gets a message twice.
With the broker down, messages are still stored, delivered on this replica and pushed otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket

from accounts.nicknames import InvalidNickname, nickname_key, normalize_nickname
from api.dm_logins import LoginSockets
from api.kafka import broadcast_consumer, stop_consumer, topic_partitions
from api.metrics import OPEN_WEBSOCKETS
from api.push import dm_push_in_background
from api.resources import Resources
from api.security import AuthenticatedUser
from feeds.dates import InvalidDate, check_date, now_kst
from storage import dm_rooms, presence, users
from storage.messages import StoredMessage

log = logging.getLogger(__name__)

MAX_TEXT = 2000
DELIVERED = Counter(
    "sosohappy_dm_delivered_total", "Direct messages delivered, by path", ["path"]
)  # local | cross_replica | pushed
REFUSED = Counter("sosohappy_dm_refused_total", "DM frames refused, by reason", ["reason"])


class FrameRefused(Exception):
    """A frame that cannot be sent; the reason goes back to the sender in an error frame."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


def parse_frame(raw: str, sender: str) -> tuple[str, int, str]:
    """``(receiver, date, text)`` of a ``{"sender","receiver","date","text"}`` frame sent by ``sender``
    (the caller's stored nickname); both names are read as canonical nicknames, so the receiver is the
    key it is stored under, and a missing ``date`` is now (16-digit KST)."""
    try:
        frame = json.loads(raw)
    except ValueError:
        raise FrameRefused("the frame is not JSON", "malformed") from None
    if not isinstance(frame, dict):
        raise FrameRefused("the frame must be a JSON object", "malformed")
    claimed, named = frame.get("sender"), frame.get("receiver")
    if not isinstance(claimed, str) or nickname_key(claimed) != sender:
        raise FrameRefused("sender must be your own nickname", "sender")
    text, date = frame.get("text"), frame.get("date")
    if not isinstance(named, str) or not named.strip():
        raise FrameRefused("receiver is required", "receiver")
    try:
        receiver = normalize_nickname(named)
    except InvalidNickname as exc:
        raise FrameRefused(exc.for_field("receiver"), "receiver") from None
    if receiver == sender:
        raise FrameRefused("you cannot message yourself", "receiver")
    if not isinstance(text, str) or not text.strip():
        raise FrameRefused("text must be a non-empty string", "text")
    if len(text) > MAX_TEXT:
        raise FrameRefused(f"text must be at most {MAX_TEXT} characters", "text")
    if date is None:
        return receiver, now_kst(), text
    if not isinstance(date, int) or isinstance(date, bool):
        raise FrameRefused("date must be a 16-digit integer yyyyMMddHHmmssSS", "date")
    try:
        return receiver, check_date(date), text
    except InvalidDate as exc:
        raise FrameRefused(f"date {exc}", "date") from None


def error_frame(reason: str, raw: str) -> str:
    """What the sender gets back for a refused frame (the socket stays open)."""
    return json.dumps({"error": reason, "frame": raw[:200]}, ensure_ascii=False)


class Socket:
    """One open DM WebSocket; sends are serialised because ASGI sends must not overlap."""

    def __init__(self, websocket: WebSocket, login: AuthenticatedUser | None = None) -> None:
        self.websocket = websocket
        self._lock = asyncio.Lock()
        #: Who opened it (``api.dm_logins`` closes it when that login ends).
        self.login = login
        #: The close code once the server ended the socket (set at once, before the close is sent):
        #: its frames are dropped from then on.
        self.ending: int | None = None
        self._closed = False

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` once; later calls, and a socket already gone, do nothing."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):  # the peer may be gone already
                await self.websocket.close(code=code, reason=reason)

    async def send(self, text: str) -> bool:
        """Send a text frame; False if the socket is gone."""
        if self.ending is not None:  # its login ended: it is being closed, nothing more goes out
            return False
        async with self._lock:
            try:
                await self.websocket.send_text(text)
                return True
            except Exception:  # closed underneath us: the reader will detach it
                return False


class DirectMessageHub:
    """The DM sockets of one API replica and the routing of messages to them, to other replicas or to push."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.replica_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sockets: dict[int, set[Socket]] = {}
        self.logins = LoginSockets(res)

    async def attach(self, user_id: int, sock: Socket) -> None:
        """Register a newly accepted socket of ``user_id``."""
        self._sockets.setdefault(user_id, set()).add(sock)
        self.logins.bind(user_id, sock)
        OPEN_WEBSOCKETS.inc()
        await self._record_presence(user_id)

    async def detach(self, user_id: int, sock: Socket) -> None:
        """Forget a closed socket (only that one: the user's other sockets stay)."""
        mine = self._sockets.get(user_id, set())
        self.logins.unbind(user_id, sock)
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
            with self.res.engine.begin() as conn:
                return work(conn)

        return await run_in_threadpool(run)

    async def deliver_local(self, user_id: int, frame: str) -> int:
        """Send ``frame`` to every socket ``user_id`` has on this replica; how many got it."""
        targets = list(self._sockets.get(user_id, ()))
        sent = await asyncio.gather(*(s.send(frame) for s in targets))
        return sum(sent)

    async def handle(self, sender_id: int, sender: str, raw: str) -> None:
        """Check, store and deliver one frame from ``sender``; ``FrameRefused`` if it cannot be sent."""
        receiver, date, text = parse_frame(raw, sender)

        def accept(conn: Any) -> tuple[int, StoredMessage, bool]:
            receiver_id = users.id_of(conn, receiver)
            if receiver_id is None:
                raise FrameRefused(f"there is no user {receiver!r}", "receiver")
            if users.is_blocked(conn, receiver_id, sender_id):
                raise FrameRefused(f"{receiver} does not accept your messages", "blocked")
            stored = self.res.messages.insert(sender, receiver, date, text)
            dm_rooms.record_message(conn, sender_id, receiver_id, stored)
            fresh = self.res.settings.dm_presence_fresh_seconds
            elsewhere = presence.connected_elsewhere(conn, receiver_id, self.replica_id, fresh)
            return receiver_id, stored, elsewhere

        receiver_id, stored, elsewhere = await self._in_transaction(accept)
        frame = json.dumps(stored.wire(), ensure_ascii=False)
        if await self.deliver_local(receiver_id, frame):
            DELIVERED.labels("local").inc()
        elif not elsewhere:
            self._push(sender_id, receiver_id, stored)
            return
        if elsewhere and not await self._publish(stored, receiver_id, frame):
            if receiver_id not in self._sockets:  # nobody got it live: notify instead
                self._push(sender_id, receiver_id, stored)

    def _push(self, sender_id: int, receiver_id: int, stored: StoredMessage) -> None:
        dm_push_in_background(self.res, sender_id, receiver_id, stored.id)
        DELIVERED.labels("pushed").inc()

    async def _publish(self, stored: StoredMessage, receiver_id: int, frame: str) -> bool:
        producer = self.res.producer
        if producer is None:
            return False
        record = {"origin": self.replica_id, "receiver_id": receiver_id, "id": stored.id, "frame": frame}
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    self.res.settings.kafka_dm_topic,
                    json.dumps(record, ensure_ascii=False).encode(),
                    key=str(receiver_id).encode(),
                ),
                timeout=2,
            )
            return True
        except Exception:
            log.warning("DM %s not broadcast: Kafka unavailable", stored.id, exc_info=True)
            return False

    async def follow(self) -> None:
        """Deliver the messages other replicas publish for this replica's sockets, from the end of the
        topic; reconnect after broker loss."""
        topic = self.res.settings.kafka_dm_topic
        while True:
            consumer = broadcast_consumer(self.res.settings, "dm")
            try:
                await asyncio.wait_for(consumer.start(), timeout=10)
                partitions = await asyncio.wait_for(topic_partitions(consumer, topic), timeout=10)
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    for records in batches.values():
                        for record in records:
                            await self._deliver_record(record.value or b"{}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("DM feed lost (%r); reconnecting", exc)
            finally:
                await stop_consumer(consumer)
            await asyncio.sleep(1)

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
            await asyncio.sleep(self.res.settings.dm_heartbeat_seconds)
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
