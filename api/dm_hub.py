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
import itertools
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from bson import ObjectId
from prometheus_client import Counter
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import Message
from starlette.websockets import WebSocket

from accounts.nicknames import InvalidNickname, nickname_key, normalize_nickname
from api.dm_limits import REPLACED, SEND_QUEUE_CHARS, SLOW, SocketCap, SocketStamp
from api.dm_logins import LoginSockets
from api.kafka import broadcast_consumer, stop_consumer, topic_partitions
from api.metrics import OPEN_WEBSOCKETS
from api.push import dm_push_in_background
from api.resources import Resources
from api.security import AuthenticatedUser
from feeds.dates import InvalidDate, check_date, near_now, now_kst
from storage import dm_rooms, presence, users
from storage.messages import MessageStore, StoredMessage

log = logging.getLogger(__name__)

MAX_TEXT = 2000
T = TypeVar("T")
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


def store_message(
    engine: Engine, messages: MessageStore, message: StoredMessage, accept: Callable[[Any], T]
) -> T:
    """Run ``accept`` (the SQL side of taking ``message``: checks and the room row) in one transaction
    and insert ``message`` into MongoDB as its last step before the commit, so both are written or
    neither: an SQL failure comes before the insert, and a failed insert or commit deletes the document
    again (by id: idempotent). A replica dying between the insert and the commit leaves a document its
    room row does not know; the history shows nothing dated after the room's latest message
    (``api.routes.dm``), so it and the room list still agree."""
    inserted = False
    try:
        with engine.begin() as conn:
            result = accept(conn)
            inserted = True
            messages.insert(message.sender, message.receiver, message.date, message.text, message.id)
        return result
    except BaseException:
        if inserted:
            try:
                messages.delete(message.id)
            except Exception:
                log.exception("DM %s stored without its room row; the history does not show it", message.id)
        raise


def error_frame(reason: str, raw: str) -> str:
    """What the sender gets back for a refused frame (the socket stays open)."""
    return json.dumps({"error": reason, "frame": raw[:200]}, ensure_ascii=False)


class Socket:
    """One open DM WebSocket. Frames go out in order through its own writer task, so delivering never
    waits for the receiver: one that does not read (unsent frames over ``SEND_QUEUE_CHARS``, or a send
    not done within ``send_timeout``) is closed as ``SLOW`` and holds up nobody else."""

    _numbers = itertools.count()

    def __init__(
        self, websocket: WebSocket, send_timeout: float = 10.0, login: AuthenticatedUser | None = None
    ) -> None:
        self.websocket = websocket
        #: Who opened it (``api.dm_logins`` closes it when that login ends).
        self.login = login
        self.opened_at, self.seq = time.time(), next(Socket._numbers)
        #: The close code once the server ends the socket (set at once, before the close frame goes out):
        #: nothing is sent or read from then on.
        self.close_code: int | None = None
        self._timeout = send_timeout
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._queued_chars = 0
        self._closing = asyncio.Event()
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
            receiving = asyncio.ensure_future(self.websocket.receive())
            closing = asyncio.ensure_future(self._closing.wait())
            await asyncio.wait({receiving, closing}, return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            if not self._closing.is_set():
                return receiving.result()
            receiving.cancel()
        return {"type": "websocket.disconnect", "code": self.close_code}

    async def finish(self) -> None:
        """After the reader stopped: let a server-side close go out (bounded), then stop the writer."""
        if self._closing.is_set():
            await asyncio.wait({self._writer}, timeout=self._timeout)
        self._writer.cancel()

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None and self.close_code != SLOW[0]:
            self._queued_chars -= len(text)
            try:
                await asyncio.wait_for(self.websocket.send_text(text), self._timeout)
            except TimeoutError:  # the receiver does not read
                self.close(*SLOW)
                break
            except Exception:  # closed underneath us: the reader sees the disconnect
                return
        with contextlib.suppress(Exception):  # gone already, or too slow to take even the close frame
            await asyncio.wait_for(self.websocket.close(self.close_code or 1000, self._close_reason), 1)


class DirectMessageHub:
    """The DM sockets of one API replica and the routing of messages to them, to other replicas or to push."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.replica_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sockets: dict[int, set[Socket]] = {}
        self.logins = LoginSockets(res)
        self.cap = SocketCap(res.settings.dm_max_sockets_per_user, res.settings.dm_presence_fresh_seconds)

    async def attach(self, user_id: int, sock: Socket) -> None:
        """Register a newly accepted socket of ``user_id``. Beyond ``dm_max_sockets_per_user`` the user's
        oldest sockets close (``REPLACED``): here at once, on other replicas through the broker."""
        self._sockets.setdefault(user_id, set()).add(sock)
        self.logins.bind(user_id, sock)
        OPEN_WEBSOCKETS.inc()
        self.cap.forget(user_id)  # a fresh round: the replicas holding this user's sockets answer it
        self._trim(user_id)
        count, fresh = len(self._sockets[user_id]), self.res.settings.dm_presence_fresh_seconds

        def record(conn: Any) -> bool:
            presence.set_sockets(conn, self.replica_id, user_id, count)
            return presence.connected_elsewhere(conn, user_id, self.replica_id, fresh)

        if await self._in_transaction(record):  # only then is there anything to count elsewhere
            self._announce(user_id, ask=True)

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
        if self.cap.knows(user_id):  # other replicas hold sockets of theirs: tell them what is left
            self._announce(user_id, ask=False)
        if not mine:
            self.cap.forget(user_id)

    def _stamp(self, sock: Socket) -> SocketStamp:
        return SocketStamp(sock.opened_at, self.replica_id, sock.seq)

    def _open(self, user_id: int) -> dict[SocketStamp, Socket]:
        return {self._stamp(s): s for s in self._sockets.get(user_id, ()) if s.close_code is None}

    def _trim(self, user_id: int) -> None:
        """Close this replica's sockets of ``user_id`` that are not among the user's newest."""
        for sock in self.cap.over_limit(user_id, self._open(user_id)):
            sock.close(*REPLACED)

    def _announce(self, user_id: int, ask: bool) -> None:
        """Tell the other replicas which sockets ``user_id`` has open here (``ask``: and to answer with
        theirs); without the broker each replica only keeps its own count within the limit."""
        producer = self.res.producer
        if producer is None:
            return
        stamps = [stamp.wire() for stamp in self._open(user_id)]
        record = {"origin": self.replica_id, "kind": "sockets", "user_id": user_id, "ask": ask}
        data = json.dumps(record | {"sockets": stamps}).encode()

        async def send() -> None:
            try:
                topic = self.res.settings.kafka_dm_topic
                await asyncio.wait_for(producer.send_and_wait(topic, data, key=str(user_id).encode()), 2)
            except Exception:
                log.warning("DM sockets of user %s not announced: Kafka unavailable", user_id)

        self.res.spawn(send(), "announce-dm-sockets")

    def _heard_sockets(self, record: dict[str, Any]) -> None:
        user_id = int(record["user_id"])
        if user_id not in self._sockets:
            return  # none of theirs here: nothing to close, and our next socket asks afresh
        stamps = [SocketStamp.from_wire(s) for s in record["sockets"]]
        self.cap.heard(user_id, str(record["origin"]), stamps)
        self._trim(user_id)
        if record.get("ask"):
            self._announce(user_id, ask=False)

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
        date = near_now(date, now_kst(), self.res.settings.dm_date_tolerance_seconds)
        stored = StoredMessage(str(ObjectId()), sender, receiver, date, text)

        def accept(conn: Any) -> tuple[int, bool]:
            receiver_id = users.id_of(conn, receiver)
            if receiver_id is None:
                raise FrameRefused(f"there is no user {receiver!r}", "receiver")
            if users.is_blocked(conn, receiver_id, sender_id):
                raise FrameRefused(f"{receiver} does not accept your messages", "blocked")
            dm_rooms.record_message(conn, sender_id, receiver_id, stored)
            fresh = self.res.settings.dm_presence_fresh_seconds
            elsewhere = presence.connected_elsewhere(conn, receiver_id, self.replica_id, fresh)
            return receiver_id, elsewhere

        receiver_id, elsewhere = await run_in_threadpool(
            store_message, self.res.engine, self.res.messages, stored, accept
        )
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
            if record.get("kind") == "sockets":
                self._heard_sockets(record)
                return
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
