"""Direct messages between users on any API replica: checked, stored, then delivered exactly once.

Each replica keeps its own users' sockets (a user may hold several: phone and tablet). A message is
stored first (its room row and its MongoDB document, both or neither: ``dm.writes``, in batches under
load); then the receiver's sockets on this replica get the frame at once, the replicas that hold other
sockets of the receiver (``dm.presence.RemotePresence`` says which) get it through the Kafka topic every
replica reads (each record sealed: ``api.relay_seal``), and a receiver with no socket anywhere gets a DM
push. This replica's own presence rows are ``dm.presence_rows``.

An accepted message costs one SQL statement: the nicknames come from this replica's hints
(``dm.directory``), checked together with the block and written with the room row by that statement
(``dm.rooms.record_checked``); a stale hint falls back to looking the users up. Presence comes from the
other replicas' broadcasts, reloaded from ``dm_presence`` on every heartbeat.
Records a replica published itself are skipped when they come back, so nobody gets a message twice.
With the broker down, messages are still stored, delivered on this replica and pushed otherwise.

The hub imports nothing of the API process: the API hands it its database engine, message store,
settings, the broadcast topic between replicas (``api.kafka.TopicBroadcast``), how to start a push
and what follows the sockets' logins (``api.dm_logins.LoginSockets``). The same topic carries each
user's open sockets (``dm.limits.SocketCap``), so a user keeps at most ``dm_max_sockets_per_user``
across replicas.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

from bson import ObjectId
from prometheus_client import Counter, Gauge
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from config import Settings
from dm import presence
from dm.conversations import active_nicknames
from dm.directory import Directory
from dm.frames import FrameRefused, error_frame, parse_frame
from dm.limits import REPLACED, Refusal, SocketCap, SocketStamp
from dm.messages import MessageStore, Party, StoredMessage
from dm.presence_rows import PresenceRows, in_transaction
from dm.sockets import Socket
from dm.writes import Draft, MessageWriter, Stale, store_message
from kst.dates import near_now, now_kst
from storage import users

log = logging.getLogger(__name__)

DELIVERED = Counter(
    "sosohappy_dm_delivered_total", "Direct messages delivered, by path", ["path"]
)  # local | cross_replica | pushed
RELAY_REPEATS = Counter(
    "sosohappy_dm_relay_repeats_total",
    "Relayed messages dropped because this replica had relayed them already",
)
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

    def followed(self, handle: Callable[[bytes], Awaitable[None]]) -> Any:
        """The topic as the replica's broadcast feed reads it (``api.kafka.ReplicaFeed``, one consumer
        for every topic a replica reads): every record published from now on goes to ``handle``."""
        ...


class SocketLogins(Protocol):
    """What closes a socket when the login it was opened with ends (``api.dm_logins.LoginSockets``)."""

    def bind(self, user_id: int, sock: Socket) -> None:
        """Follow a newly accepted socket's login."""
        ...

    def unbind(self, user_id: int, sock: Socket) -> None:
        """Stop following a closed socket."""
        ...

    async def admits(self, sock: Socket) -> bool:
        """Whether a frame just received on ``sock`` may be handled (False: the socket is closed)."""
        ...


class FrameAdmission(Protocol):
    """The size and rate limits of one socket's incoming frames (``api.dm_limits.FrameGate``)."""

    def admit(self, message: Mapping[str, Any]) -> Refusal | None:
        """``None`` when the ASGI message may be handled, else the refusal."""
        ...


class RecentIds:
    """The ids of the last ``size`` messages relayed to this replica's sockets. The topic delivers at
    least once (a producer retry, or a re-created topic read again from its beginning, repeats a record);
    a repeat is dropped here, so a socket shows each message once."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, message_id: str) -> bool:
        """True the first time ``message_id`` is seen (within the last ``size`` ids)."""
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return True


class DirectMessageHub:
    """The DM sockets of one API replica and the routing of messages to them, to other replicas or to push."""

    def __init__(
        self,
        engine: Engine,
        messages: MessageStore,
        settings: Settings,
        broadcast: ReplicaBroadcast,
        start_push: StartPush,
        logins: SocketLogins,
    ) -> None:
        self._engine, self._messages, self._settings = engine, messages, settings
        self._broadcast, self._start_push = broadcast, start_push
        self.replica_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._sockets: dict[int, set[Socket]] = {}
        self.logins = logins
        self.cap = SocketCap(settings.dm_max_sockets_per_user, settings.dm_presence_fresh_seconds)
        self._announcing: set[asyncio.Task[None]] = set()
        self.remote = presence.RemotePresence(settings.dm_presence_fresh_seconds)
        self.directory = Directory()
        self._relayed = RecentIds()
        self._writer = MessageWriter(engine, messages)
        self.presence_rows = PresenceRows(engine, self.replica_id, lambda u: len(self._sockets.get(u, ())))

    async def attach(self, user_id: int, sock: Socket, nickname: str | None = None) -> None:
        """Register a newly accepted socket of ``user_id``. Beyond ``dm_max_sockets_per_user`` the user's
        oldest sockets close (``REPLACED``): here at once, on other replicas through the broker."""
        self._sockets.setdefault(user_id, set()).add(sock)
        self.logins.bind(user_id, sock)
        OPEN_WEBSOCKETS.inc()
        if nickname is not None:  # just read from the database by the handshake
            self.directory.learn(user_id, nickname)
        self.cap.forget(user_id)  # a fresh round: the replicas holding this user's sockets answer it
        self._trim(user_id)
        await self.presence_rows.record(user_id)
        self._announce_presence(user_id)
        fresh = self._settings.dm_presence_fresh_seconds
        try:
            elsewhere = await in_transaction(
                self._engine, lambda conn: presence.connected_elsewhere(conn, user_id, self.replica_id, fresh)
            )
        except Exception:
            log.warning("DM presence of user %s not read", user_id, exc_info=True)
            elsewhere = True  # ask: the replicas holding none of theirs do not answer
        if elsewhere:  # only then is there anything to count elsewhere
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
        await self.presence_rows.record(user_id)
        self._announce_presence(user_id)
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
        theirs), in the background; without the broker each replica only keeps its own count within
        the limit."""
        stamps = [stamp.wire() for stamp in self._open(user_id)]
        record = {"origin": self.replica_id, "kind": "sockets", "user_id": user_id, "ask": ask}
        self._publish_soon(user_id, record | {"sockets": stamps})

    def _announce_presence(self, user_id: int) -> None:
        """Tell the other replicas how many sockets ``user_id`` has here now (their ``RemotePresence``),
        in the background; a lost one is corrected by their next reload of ``dm_presence``."""
        count = len(self._sockets.get(user_id, ()))
        record = {"origin": self.replica_id, "kind": "presence", "user_id": user_id, "sockets": count}
        self._publish_soon(user_id, record)

    def _publish_soon(self, user_id: int, record: dict[str, Any]) -> None:
        data = json.dumps(record).encode()

        async def send() -> None:
            try:
                await self._broadcast.publish(str(user_id).encode(), data)
            except Exception:
                log.warning("DM %s of user %s not announced: Kafka unavailable", record["kind"], user_id)

        task = asyncio.ensure_future(send())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def _heard_sockets(self, record: dict[str, Any]) -> None:
        user_id = int(record["user_id"])
        if user_id not in self._sockets:
            return  # none of theirs here: nothing to close, and our next socket asks afresh
        stamps = [SocketStamp.from_wire(s) for s in record["sockets"]]
        self.cap.heard(user_id, str(record["origin"]), stamps)
        self._trim(user_id)
        if record.get("ask"):
            self._announce(user_id, ask=False)

    async def deliver_local(self, user_id: int, frame: str) -> int:
        """Send ``frame`` to every socket ``user_id`` has on this replica; how many got it."""
        sent = 0
        for sock in list(self._sockets.get(user_id, ())):  # each send only queues: no task per socket
            sent += await sock.send(frame)
        return sent

    async def relay(self, user_id: int, nickname: str, sock: Socket, gate: FrameAdmission) -> None:
        """Serve an accepted socket of ``user_id`` (who connected as ``nickname``) until it closes: every
        text frame within ``gate``'s size and rate limits (checked before parsing) whose login still
        holds (``logins.admits``) is handled; a refused or failed one is answered with an error frame
        and the socket stays open, unless the refusal closes it (too big, flooding, login ended)."""
        try:
            await self.attach(user_id, sock, nickname)
            while True:
                message = await sock.receive()
                if message["type"] == "websocket.disconnect":
                    break
                refusal = gate.admit(message)  # size and rate, before anything is parsed
                if refusal is not None:
                    REFUSED.labels(refusal.code).inc()
                    if refusal.close is not None:
                        sock.close(*refusal.close)
                    else:
                        await sock.send(error_frame(refusal.reason, message.get("text") or ""))
                    continue
                try:
                    admitted = await self.logins.admits(sock)
                except Exception:  # the database had to say and could not: refuse this frame only
                    log.warning("DM login of user %s not checked", user_id, exc_info=True)
                    REFUSED.labels("unavailable").inc()
                    await sock.send(
                        error_frame("the message could not be stored; try again", message.get("text") or "")
                    )
                    continue
                if not admitted:  # login revoked or token expired: the socket is closed, the frame dropped
                    REFUSED.labels("login_ended").inc()
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
            try:
                await self.detach(user_id, sock)
            finally:
                await sock.finish()

    async def handle(self, sender_id: int, sender: str, raw: str) -> None:
        """Check, store and deliver one frame from user ``sender_id`` (connected as ``sender``; the
        frame may name its sender so or by the user's nickname now, after a rename on any device);
        ``FrameRefused`` if it cannot be sent. The receiver is the user holding the frame's nickname
        now; the message is stored under both ids and delivered with both current nicknames."""
        try:
            receiver, date, text = parse_frame(raw, sender)
        except FrameRefused as refused:
            current = await self._renamed(sender_id, sender) if refused.code == "sender" else None
            if current is None:
                raise
            receiver, date, text = parse_frame(raw, current)
        date = near_now(date, now_kst(), self._settings.dm_date_tolerance_seconds)
        draft = Draft(str(ObjectId()), date, text)
        stored, own = await self._store(sender_id, receiver, draft)
        receiver_id = stored.receiver_id
        elsewhere = self.remote.elsewhere(receiver_id)
        frame = stored.dto({sender_id: own, receiver_id: receiver}).model_dump_json()
        if await self.deliver_local(receiver_id, frame):
            DELIVERED.labels("local").inc()
        elif not elsewhere:
            self._push(sender_id, receiver_id, stored)
            return
        if elsewhere and not await self._publish(stored, receiver_id, frame):
            if receiver_id not in self._sockets:  # nobody got it live: notify instead
                self._push(sender_id, receiver_id, stored)

    async def _renamed(self, sender_id: int, connected_as: str) -> str | None:
        """The nickname of ``sender_id`` now, when it is not ``connected_as``: the replica's hint if it
        has moved on (``record_checked`` checks it, as every hint), else read (and learnt)."""
        hint = self.directory.nickname(sender_id)
        if hint is not None and hint != connected_as:
            return hint

        def read() -> str | None:
            with self._engine.connect() as conn:
                return users.active_nickname(conn, sender_id)

        current = await run_in_threadpool(read)
        if current is not None:
            self.directory.learn(sender_id, current)
        return current if current != connected_as else None

    async def _store(self, sender_id: int, receiver: str, draft: Draft) -> tuple[StoredMessage, str]:
        """Store ``draft`` from ``sender_id`` to the user holding ``receiver``: named by the hints and
        checked by the one statement that writes the room row; with no hint or a stale one, looked up
        first. The message and the sender's current nickname."""
        own, receiver_id = self.directory.nickname(sender_id), self.directory.user_id(receiver)
        if own is not None and receiver_id is not None:
            try:
                return await self._writer.store(
                    (Party(sender_id, own), Party(receiver_id, receiver)), draft
                ), own
            except Stale:
                self.directory.forget(sender_id)
                self.directory.forget(receiver_id)
        accept = partial(self._accept, sender_id, receiver)
        stored, current = await run_in_threadpool(store_message, self._engine, self._messages, draft, accept)
        self.directory.learn(sender_id, current)
        self.directory.learn(stored.receiver_id, receiver)
        return stored, current

    def _accept(self, sender_id: int, receiver: str, conn: Any) -> tuple[tuple[Party, Party], str]:
        """The sender and the user holding ``receiver`` now, read in the message's transaction;
        ``FrameRefused`` when the frame cannot be sent to them."""
        found = active_nicknames(conn, ids=[sender_id], nicknames=[receiver])  # one resigning names nobody
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
        return (Party(sender_id, own), Party(receiver_id, receiver)), own

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

    def followed(self) -> Any:
        """The DM topic for the replica's broadcast feed: the messages other replicas publish for this
        replica's sockets, from the end of the topic (``api.kafka.ReplicaFeed`` reconnects)."""
        return self._broadcast.followed(self._deliver_record)

    async def _deliver_record(self, value: bytes) -> None:
        try:
            record = json.loads(value)
            if record["origin"] == self.replica_id:
                return  # published here, already delivered to this replica's sockets
            if record.get("kind") == "sockets":
                self._heard_sockets(record)
                return
            if record.get("kind") == "presence":
                self.remote.heard(str(record["origin"]), int(record["user_id"]), int(record["sockets"]))
                return
            if not self._relayed.first_time(str(record["id"])):
                RELAY_REPEATS.inc()
                return
            if await self.deliver_local(int(record["receiver_id"]), str(record["frame"])):
                DELIVERED.labels("cross_replica").inc()
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed DM record")

    async def heartbeat(self) -> None:
        """Keep this replica's presence rows fresh while it lives, and reload the other replicas' rows
        into ``remote`` (at once, then on every beat)."""
        fresh = self._settings.dm_presence_fresh_seconds
        beat = False
        while True:
            started = presence.utcnow()

            def work(conn: Any, beat: bool = beat) -> list[tuple[int, str, Any]]:
                if beat:
                    presence.heartbeat(conn, self.replica_id)
                return presence.others(conn, self.replica_id, fresh)

            try:
                self.remote.load(await in_transaction(self._engine, work), started)
            except Exception:
                log.warning("DM presence heartbeat failed", exc_info=True)
            await self.presence_rows.rewrite_failed()
            await asyncio.sleep(self._settings.dm_heartbeat_seconds)
            beat = True

    async def close(self) -> None:
        """Finish the message batches being written and forget this replica's presence (its sockets
        close with the process)."""
        for task in list(self._announcing):
            task.cancel()
        await self._writer.close()
        await self.presence_rows.close()
