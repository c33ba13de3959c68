"""Kafka consumers of the broadcasts between API replicas: every replica reads every record (no consumer
group), starts and stops within bounded time, and creates its topic on a fresh broker."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

from config import Settings

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge("sosohappy_kafka_consumer_lag", "Messages behind the end of a topic", ["topic"])
TOPIC_RESETS = Counter(
    "sosohappy_kafka_topic_resets_total",
    "Times a follower found its topic re-created (broker restarted empty, partitions changed)",
    ["topic"],
)
METADATA_MAX_AGE_MS = 3000
WATCH_SECONDS = 1.0  # how often a follower compares its positions with the topic's partitions and ends


class TopicReset(Exception):
    """The broker no longer holds what this consumer stands on: it came back without the topic's
    records (a position past the partition's end, which the broker answers with an endless empty
    fetch rather than an out-of-range error) or the topic's partitions changed (re-created on the
    first publish with the broker's default count)."""


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
    offset + 1, below records already fetched whenever that batch holds several; README, Benchmarks.)"""

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
            raise TopicReset(problem)
        self._suspect = problem
        return ends

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
    keep their order), follow every partition from the end of the topic."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        name: str,
        producer: Callable[[], AIOKafkaProducer | None],
        partitions: int = 1,
    ) -> None:
        self._settings, self._topic, self._name, self._producer = settings, topic, name, producer
        self._partitions = partitions  # created with, on a broker that does not know the topic

    async def publish(self, key: bytes, value: bytes) -> bool:
        """Publish one record within two seconds; False while no producer is connected."""
        producer = self._producer()
        if producer is None:
            return False
        async with asyncio.timeout(2):  # no task per record, unlike wait_for
            await producer.send_and_wait(self._topic, value, key=key)
        return True

    async def follow(self, handle: Callable[[bytes], Awaitable[None]]) -> None:
        """Hand every record published from now on to ``handle``, at least once; reconnect after broker
        loss. After a ``TopicReset`` the new topic is read from its beginning: everything in it was
        published since the broker came back, and a record of it that was read before the reset was seen
        is handed over again (``handle`` drops repeats, see ``dm.hub.RecentIds``)."""
        from_beginning = False
        while True:
            consumer = broadcast_consumer(self._settings, self._name)
            try:
                await asyncio.wait_for(consumer.start(), timeout=10)
                partitions = await asyncio.wait_for(
                    topic_partitions(consumer, self._topic, self._partitions), timeout=10
                )
                consumer.assign(partitions)
                if from_beginning:
                    await consumer.seek_to_beginning(*partitions)
                else:
                    await consumer.seek_to_end(*partitions)
                from_beginning = False
                watch = TopicWatch(consumer, self._topic, partitions)
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    for records in batches.values():
                        for record in records:
                            await handle(record.value or b"{}")
                    await watch.check()
            except asyncio.CancelledError:
                raise
            except TopicReset as exc:
                log.warning(
                    "%s topic re-created (%s); reading the new one from its beginning", self._name, exc
                )
                from_beginning = True
            except Exception as exc:
                log.warning("%s feed lost (%r); reconnecting", self._name, exc)
            finally:
                await stop_consumer(consumer)
            await asyncio.sleep(0 if from_beginning else 1)
