"""Which logins and accounts are revoked, known in memory by every API replica.

Every revocation is written to the ``revocations`` table in the transaction that revokes, so the
database is always the truth; the Kafka topic only spreads it within a second. A replica seeds its view
from the table (records younger than the access-token lifetime) before serving from it, reads the table
again whenever the broker (re)connects (the broker may have kept nothing), and polls it for newer records
every ``revocation_reconcile_seconds``, so a revocation whose broadcast was lost (broker down, replica
died before publishing) still reaches every replica. Until the view is seeded and the topic read to the
end offsets it saw, ``is_revoked`` answers ``None`` and callers ask the database instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from accounts.revocations import RevocationView
from api.kafka import CONSUMER_LAG, FollowedTopic
from api.resources import Resources
from storage import logins
from storage.models import Revocation

log = logging.getLogger(__name__)

VIEW_READY = Gauge("sosohappy_revocation_view_ready", "1 when the in-memory revocation view is caught up")

#: Each poll re-reads this much before the previous one started: a revocation stamped just before it
#: but committed after it (or stamped by a replica whose clock is a little behind) is still found.
RECONCILE_OVERLAP = timedelta(seconds=60)
#: How long the lifespan waits for the first seed before serving (the database path answers meanwhile).
FIRST_SEED_WAIT_SECONDS = 5.0


def revocation_event(record: Revocation) -> dict[str, object]:
    """The broadcast form of one revocation record (what ``RevocationView.apply`` reads)."""
    at = record.revoked_at.replace(tzinfo=UTC).timestamp()
    return {"kind": record.kind, "id": record.subject, "at": at}


async def publish_revocations(res: Resources, user_id: int, records: Sequence[Revocation]) -> None:
    """Tell every replica (this one at once) about revocations already committed to the database."""
    if not records:
        return
    events = [revocation_event(record) for record in records]
    view: RevocationView = res.revocations
    for event in events:
        view.apply(event)
    producer = res.producer
    if producer is None:
        log.warning("%d revocation(s) not broadcast: Kafka is down (replicas read the database)", len(events))
        return
    topic, key = res.settings.kafka_token_topic, str(user_id).encode()

    async def broadcast() -> None:
        sent = [await producer.send(topic, json.dumps(event).encode(), key=key) for event in events]
        await asyncio.gather(*sent)

    try:
        await asyncio.wait_for(broadcast(), timeout=2)
    except Exception:
        log.exception("%d revocation(s) not broadcast (replicas find them in the database)", len(events))


def _set_gauge(view: RevocationView) -> None:
    VIEW_READY.set(1 if view.ready else 0)


def _read_records(res: Resources, since: datetime) -> list[dict[str, object]]:
    with res.sessions() as session:
        return [revocation_event(r) for r in logins.revocations_since(session, since)]


async def reconcile_from_database(res: Resources, since: datetime | None = None) -> int:
    """Apply every revocation record stamped at or after ``since`` (default: all that can still
    matter, i.e. younger than the access-token lifetime) to the view; returns how many were read."""
    view: RevocationView = res.revocations
    since = since or logins.utcnow() - timedelta(seconds=view.ttl_seconds)
    events = await asyncio.to_thread(_read_records, res, since)
    for event in events:
        view.apply(event)
    return len(events)


async def poll_revocations(res: Resources, first_seed: asyncio.Event | None = None) -> None:
    """Seed the view from the database, then read the records newer than the last poll forever."""
    view: RevocationView = res.revocations
    interval = res.settings.revocation_reconcile_seconds
    since: datetime | None = None
    while True:
        started = logins.utcnow()
        try:
            found = await reconcile_from_database(res, since)
            since = started - RECONCILE_OVERLAP
            if not view.seeded:
                view.seeded = True
                _set_gauge(view)
                log.info("revocation view seeded from the database (%d records)", found)
                if first_seed is not None:
                    first_seed.set()
            view.forget_expired()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation records not read (%r); retrying", exc)
        # Until the first seed, retry soon: the replica reports not ready meanwhile.
        await asyncio.sleep(interval if view.seeded else min(interval, 1.0))


class RevocationTopic(FollowedTopic):
    """The token topic as the view reads it, one of the replica's ``ReplicaFeed`` topics: from its
    beginning on every (re)connection; the view is ``live`` once the consumer reached the end offsets
    seen at that connection and the database's records were read again (the broker may have lost
    some). While the feed is disconnected the view is not live and requests ask the database. The
    database is read beside the feed, not in its loop: a slow or absent database delays the view, never
    the DM topic the same consumer reads."""

    create_with = 1

    def __init__(self, res: Resources) -> None:
        self._res, self._view = res, res.revocations
        self.topic = res.settings.kafka_token_topic
        self._targets: dict[TopicPartition, int] = {}
        self._last_reconcile = 0.0
        self._reconciling: asyncio.Task[None] | None = None

    async def assigned(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], recreated: bool
    ) -> None:
        await consumer.seek_to_beginning(*partitions)
        self._targets = await consumer.end_offsets(partitions)
        self._last_reconcile = 0.0

    async def received(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                self._view.apply(json.loads(record.value or b"{}"))
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed revocation event at offset %s", record.offset)

    async def polled(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        ends: dict[TopicPartition, int] | None,
    ) -> None:
        view = self._view
        positions = {tp: int(await consumer.position(tp)) for tp in partitions}
        caught_up = all(positions[tp] >= off for tp, off in self._targets.items())
        reconciling = self._reconciling is not None and not self._reconciling.done()
        if not view.live and caught_up and not reconciling and time.monotonic() - self._last_reconcile > 1:
            self._last_reconcile = time.monotonic()
            self._reconciling = asyncio.ensure_future(self._go_live())
        if ends is not None:
            lag = sum(max(0, ends[tp] - positions[tp]) for tp in partitions)
            CONSUMER_LAG.labels(self.topic).set(lag)
            view.forget_expired()

    async def _go_live(self) -> None:
        """Read the database's records again, then serve from the view (unless the feed was lost
        meanwhile: ``lost`` cancels this)."""
        if await _reconciled(self._res):
            self._view.live = True
            _set_gauge(self._view)
            log.info("revocation view caught up")

    def lost(self) -> None:
        if self._reconciling is not None:
            self._reconciling.cancel()
            self._reconciling = None
        if self._view.live:
            log.warning("revocation feed lost; authenticating against the database meanwhile")
        self._view.live = False
        _set_gauge(self._view)


async def _reconciled(res: Resources) -> bool:
    """Read every record that can still matter; False (logged) when the database does not answer."""
    try:
        await reconcile_from_database(res)
        return True
    except Exception as exc:
        log.warning("revocation records not read after the broker connected (%r); retrying", exc)
        return False


async def start_revocation_view(res: Resources) -> RevocationTopic:
    """Start the database poller of this replica's view and wait (bounded) for the first seed, so a
    healthy replica serves from a seeded view from its first request; the token topic it returns is
    for the replica's ``ReplicaFeed`` to read."""
    first_seed = asyncio.Event()
    res.spawn(poll_revocations(res, first_seed), "poll-revocations")
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(first_seed.wait(), FIRST_SEED_WAIT_SECONDS)
    return RevocationTopic(res)
