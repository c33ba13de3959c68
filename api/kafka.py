"""Kafka consumers of the broadcasts between API replicas: every replica reads every record (no consumer
group), starts and stops within bounded time, and creates its topics on a fresh broker.

A replica reads all its broadcast topics (revocations, direct messages) through **one** consumer
(``ReplicaFeed``): one connection and one fetch per wait instead of one per topic. On Tansu a fetch is
answered only when its wait expires, so an idle consumer costs a fetch every
``kafka_fetch_max_wait_ms`` whatever it reads; two consumers per replica cost twice that.

A ``TopicBroadcast`` (the DM topic) seals every value it publishes and opens every value it reads
(``api.relay_seal``); a record it cannot open is dropped, counted and logged without its content."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

from api.relay_seal import REASONS, RecordSeal, UnreadableRecord
from config import Settings

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge("sosohappy_kafka_consumer_lag", "Messages behind the end of a topic", ["topic"])
TOPIC_RESETS = Counter(
    "sosohappy_kafka_topic_resets_total",
    "Times a follower found its topic re-created (broker restarted empty, partitions changed)",
    ["topic"],
)
OFFSET_GAPS = Counter(
    "sosohappy_kafka_offset_gaps_total",
    "Records a fetch skipped over: read again (reread) or, after REREADS tries, given up on (skipped)",
    ["topic", "outcome"],
)
UNREADABLE_RECORDS = Counter(
    "sosohappy_kafka_records_unreadable_total",
    "Records of a sealed broadcast dropped unopened: malformed, under a key id this replica lacks "
    "(unknown_key), or altered, forged or moved (not_authentic)",
    ["topic", "reason"],
)
METADATA_MAX_AGE_MS = 3000
WATCH_SECONDS = 1.0  # how often a follower compares its positions with the topic's partitions and ends
REREADS = 10  # times one missing offset is read again before the gap is taken as real


class TopicReset(Exception):
    """The broker no longer holds what this consumer stands on: it came back without the topic's
    records (a position past the partition's end, which the broker answers with an endless empty
    fetch rather than an out-of-range error) or the topic's partitions changed (re-created on the
    first publish with the broker's default count)."""

    def __init__(self, topic: str, problem: str) -> None:
        super().__init__(problem)
        self.topic = topic


def broadcast_consumer(settings: Settings, name: str) -> AIOKafkaConsumer:
    """A consumer outside any group (each replica reads everything), polling with the configured wait:
    the Tansu broker answers a waiting fetch only when it expires, so the wait sets delivery latency."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        request_timeout_ms=5000,
        # A broker that restarted empty may re-create the topic with other partitions; see them soon.
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


def broadcast_producer(settings: Settings) -> AIOKafkaProducer:
    """The process's producer for the broadcasts (not started): each record sent at once, acknowledged
    by the partition leader. A broker that restarted empty re-creates a topic, maybe with other
    partitions; Tansu takes records for partitions the topic no longer has, where no consumer reads
    them, so the producer looks at the topics as often as the consumers do."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=0,
        acks=1,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop within five seconds. Not ``wait_for``: it would wait for a cancelled ``stop()`` that ignores
    cancellation while the broker is unreachable; the task finishes (or is dropped) in the background."""
    stopping = asyncio.ensure_future(consumer.stop())
    await asyncio.wait({stopping}, timeout=5)
    stopping.add_done_callback(lambda t: t.cancelled() or t.exception())


async def topic_partitions(
    consumer: AIOKafkaConsumer, topic: str, create_with: int = 1
) -> list[TopicPartition]:
    """The topic's partitions, creating the topic with ``create_with`` partitions if the broker does not
    know it yet."""
    for attempt in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if attempt == 5:
            await _create_topic(consumer, topic, create_with)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


class TopicWatch:
    """Compares a follower's assignment with its topic every ``WATCH_SECONDS`` and raises ``TopicReset``
    when the same mismatch is seen at two checks in a row. A partition counts as behind when the high
    watermark of the broker's latest fetch answer for it is below the consumer's position: a fetch that
    returned records says the partition reaches at least that far, so only a broker that came back
    without them answers lower. (Not ``ListOffsets``: Tansu 0.6 answers it with the last batch's first
    offset + 1, below records already fetched whenever that batch holds several; bench/HISTORY.md.)"""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        partitions: list[TopicPartition],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer, self._topic, self._partitions = consumer, topic, partitions
        self._clock = clock
        self._checked = clock()
        self._suspect: str | None = None

    async def check(self) -> dict[TopicPartition, int] | None:
        """The partitions' end offsets when a check is due (else ``None``); raises ``TopicReset``."""
        if self._clock() - self._checked < WATCH_SECONDS:
            return None
        self._checked = self._clock()
        positions = {tp: int(await self._consumer.position(tp)) for tp in self._partitions}
        ends = await asyncio.wait_for(self._consumer.end_offsets(self._partitions), timeout=3)
        problem = self._mismatch(positions)
        if problem is not None and problem == self._suspect:
            TOPIC_RESETS.labels(self._topic).inc()
            raise TopicReset(self._topic, problem)
        self._suspect = problem
        return ends

    async def mismatched(self) -> bool:
        """Whether the topic looks re-created right now (one look, not two in a row): asked when another
        topic of the same consumer was just found re-created, as a broker back empty loses all of them."""
        try:
            async with asyncio.timeout(2):  # a position being reset waits for the broker
                positions = {tp: int(await self._consumer.position(tp)) for tp in self._partitions}
        except Exception:  # no position to compare: the topic is read from where its follower says
            return False
        return self._mismatch(positions) is not None

    def _mismatch(self, positions: dict[TopicPartition, int]) -> str | None:
        known = self._consumer.partitions_for_topic(self._topic)
        assigned = {tp.partition for tp in self._partitions}
        if known is not None and set(known) != assigned:
            return f"{self._topic} has partitions {sorted(known)}, not {sorted(assigned)}"
        behind = []
        for tp in self._partitions:
            highwater = self._consumer.highwater(tp)  # None until a fetch answered for it
            if highwater is not None and highwater < positions[tp]:
                behind.append(tp.partition)
        if behind:
            return f"{self._topic} partitions {behind} end before this consumer's positions"
        return None


class OffsetGaps:
    """Keeps a follower from stepping over a record: a fetch at a partition's end on Tansu 0.6 can answer
    with the records after one that a concurrent produce has not made visible yet, and the consumer's
    position moves past it for good (``bench.tansu_tail_reads``: 1 record in 20,000, an offset jump seen
    live, none in the stored log). Per partition this knows the offset the next record should have; a
    record beyond it ends the batch there, and the caller reads the partition again from the missing
    offset (``contiguous``). Our topics are neither compacted nor transactional, so a real gap is not
    expected; one that is still there after ``REREADS`` reads is accepted (counted, logged)."""

    def __init__(self, rereads: int = REREADS) -> None:
        self._limit = rereads
        self._next: dict[TopicPartition, int] = {}
        self._tries: dict[TopicPartition, tuple[int, int]] = {}  # missing offset, reads so far
        self.rereads = 0  # partitions sent back to a missing offset, since this guard was made

    def forget(self) -> None:
        """A new connection: positions come from its seeks, not from what was read before."""
        self._next.clear()
        self._tries.clear()

    def take(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> list[ConsumerRecord]:
        """The records of ``tp`` from one fetch that may be handled now (``contiguous``); where one is
        missing, ``consumer`` is sent back to read ``tp`` again from it."""
        ready, reread = self.contiguous(tp, records)
        if reread is not None:
            consumer.seek(tp, reread)
        return ready

    def contiguous(
        self, tp: TopicPartition, records: list[ConsumerRecord]
    ) -> tuple[list[ConsumerRecord], int | None]:
        """``records`` (one partition's, in order) up to the first one past a missing offset, and that
        offset to read again from (``None``: nothing missing). An offset below the expected one is
        taken as it comes: aiokafka never hands a record below its position twice, so the position was
        reset (the topic re-created, an out-of-range reset), and those records are new."""
        expected = self._next.get(tp)
        ready: list[ConsumerRecord] = []
        for record in records:
            if expected is not None and record.offset > expected:
                if self._read_again(tp, expected, record.offset):
                    return ready, expected
            ready.append(record)
            expected = self._next[tp] = record.offset + 1
        if ready:
            self._tries.pop(tp, None)
        return ready, None

    def _read_again(self, tp: TopicPartition, missing: int, found: int) -> bool:
        """Whether to read ``tp`` again from ``missing`` (a fetch answered ``found`` instead)."""
        last, tries = self._tries.get(tp, (missing, 0))
        tries = tries + 1 if last == missing else 1
        if tries <= self._limit:
            self._tries[tp] = (missing, tries)
            self.rereads += 1
            OFFSET_GAPS.labels(tp.topic, "reread").inc()
            return True
        self._tries.pop(tp, None)
        OFFSET_GAPS.labels(tp.topic, "skipped").inc()
        log.warning(
            "%s[%d]: offsets %d..%d still missing after %d reads; going on without them",
            tp.topic,
            tp.partition,
            missing,
            found - 1,
            self._limit,
        )
        return False


async def _create_topic(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> None:
    """Create the topic on a fresh broker (production clusters declare it; see k8s/)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=consumer._client._bootstrap_servers)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class TopicBroadcast:
    """One broadcast topic between API replicas (``dm.hub.ReplicaBroadcast``): publish through the
    process's producer with a bounded wait (a record's key picks its partition, so one key's records
    keep their order); the replica's ``ReplicaFeed`` follows it (``followed``). Every value is sealed
    by ``seal`` before it leaves the process and opened after it is read (``api.relay_seal``)."""

    def __init__(
        self,
        topic: str,
        producer: Callable[[], AIOKafkaProducer | None],
        seal: RecordSeal,
        partitions: int = 1,
    ) -> None:
        self._topic, self._producer, self._seal = topic, producer, seal
        self._partitions = partitions  # created with, on a broker that does not know the topic

    async def publish(self, key: bytes, value: bytes) -> bool:
        """Publish one record (``value`` sealed for ``key``) within two seconds; False while no
        producer is connected."""
        producer = self._producer()
        if producer is None:
            return False
        sealed = self._seal.seal(self._topic, key, value)
        async with asyncio.timeout(2):  # no task per record, unlike wait_for
            await producer.send_and_wait(self._topic, sealed, key=key)
        return True

    def followed(self, handle: Callable[[bytes], Awaitable[None]]) -> FollowedTopic:
        """This topic as one of a ``ReplicaFeed``'s: every record published from now on is handed to
        ``handle``, opened, at least once (``handle`` drops repeats, see ``dm.hub.RecentIds``); one
        that cannot be opened is dropped, counted and logged without its content."""
        return _HandledTopic(self._topic, self._partitions, handle, self._seal)


class FollowedTopic(ABC):
    """One topic of a ``ReplicaFeed``: where to start reading it and what to do with its records."""

    topic: str
    #: Partitions to create the topic with on a broker that does not know it.
    create_with: int

    @abstractmethod
    async def assigned(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], recreated: bool
    ) -> None:
        """Seek ``partitions`` (just assigned, on a new connection); ``recreated``: the topic was found
        re-created by the broker since the last connection, so everything in it is new."""

    @abstractmethod
    async def received(self, records: list[ConsumerRecord]) -> None:
        """Handle one partition's records of one fetch, in order."""

    async def polled(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        ends: dict[TopicPartition, int] | None,
    ) -> None:
        """After every poll (``ends``: the partitions' end offsets when a watch check was due); nothing
        by default."""
        return None

    def lost(self) -> None:
        """The connection ended (error, reset or cancellation): nothing is read until the next
        ``assigned``; nothing to do by default."""
        return None


class _HandledTopic(FollowedTopic):
    """A sealed broadcast followed from its end (from its beginning once re-created), each record's
    opened value to ``handle``."""

    def __init__(
        self, topic: str, create_with: int, handle: Callable[[bytes], Awaitable[None]], seal: RecordSeal
    ) -> None:
        self.topic, self.create_with, self._handle, self._seal = topic, create_with, handle, seal
        for reason in REASONS:  # every series at 0 from the start, for rates and alerts
            UNREADABLE_RECORDS.labels(topic, reason)

    async def assigned(
        self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition], recreated: bool
    ) -> None:
        if recreated:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)

    async def received(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                value = self._seal.open(self.topic, record.key, record.value)
            except UnreadableRecord as exc:  # never the feed's problem: the next record is read
                UNREADABLE_RECORDS.labels(self.topic, exc.reason).inc()
                log.warning(
                    "%s[%d] offset %d: record dropped unopened (%s)",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                continue
            await self._handle(value)


class ReplicaFeed:
    """Reads every followed topic through one consumer, reconnecting after broker loss. A topic found
    re-created (``TopicReset``: the broker came back empty, or its partitions changed) is read from its
    beginning on the next connection; every (re)connection seeks each topic where it says
    (``FollowedTopic.assigned``), so a replica never depends on what one connection had read."""

    def __init__(self, settings: Settings, name: str, topics: Sequence[FollowedTopic]) -> None:
        if len({t.topic for t in topics}) != len(topics):
            raise ValueError("each topic may be followed once per feed")
        self._settings, self._name, self._topics = settings, name, list(topics)
        self._by_name = {t.topic: t for t in topics}
        for topic in self._by_name:  # every series at 0 from the start, for rates and alerts
            for outcome in ("reread", "skipped"):
                OFFSET_GAPS.labels(topic, outcome)

    async def run(self) -> None:
        """Until cancelled."""
        recreated: set[str] = set()
        gaps = OffsetGaps()
        while True:
            consumer = broadcast_consumer(self._settings, self._name)
            watches: list[tuple[FollowedTopic, TopicWatch]] = []
            try:
                await asyncio.wait_for(consumer.start(), timeout=10)
                # All at once: a topic the broker lacks is created with its own partition count
                # before anything else (a metadata request, a producer) creates it with the broker's.
                found = await asyncio.wait_for(
                    asyncio.gather(
                        *(topic_partitions(consumer, t.topic, t.create_with) for t in self._topics)
                    ),
                    timeout=10,
                )
                assigned = {t.topic: tps for t, tps in zip(self._topics, found, strict=True)}
                consumer.assign([tp for tps in assigned.values() for tp in tps])
                for followed in self._topics:
                    await followed.assigned(consumer, assigned[followed.topic], followed.topic in recreated)
                recreated = set()
                watches = [(t, TopicWatch(consumer, t.topic, assigned[t.topic])) for t in self._topics]
                gaps.forget()
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                    for tp, records in batches.items():
                        if ready := gaps.take(consumer, tp, records):
                            await self._by_name[tp.topic].received(ready)
                    for followed, watch in watches:
                        ends = await watch.check()
                        await followed.polled(consumer, assigned[followed.topic], ends)
            except asyncio.CancelledError:
                raise
            except TopicReset as exc:
                log.warning(
                    "%s: topic %s re-created (%s); reading the new one from its beginning",
                    self._name,
                    exc.topic,
                    exc,
                )
                recreated.add(exc.topic)
                # The other topics' own evidence, from the same fetch answers: a broker back empty lost
                # them too; a topic re-created with other partitions is alone.
                recreated.update([f.topic for f, watch in watches if await watch.mismatched()])
            except Exception as exc:
                log.warning("%s feed lost (%r); reconnecting", self._name, exc)
            finally:
                for followed in self._topics:
                    followed.lost()
                await stop_consumer(consumer)
            await asyncio.sleep(0 if recreated else 1)
