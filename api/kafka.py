"""Kafka consumers of the broadcasts between API replicas: every replica reads every record (no consumer
group), starts and stops within bounded time, and creates its topic on a fresh broker."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Gauge

from config import Settings

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge("sosohappy_kafka_consumer_lag", "Messages behind the end of a topic", ["topic"])


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
    )


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop within five seconds. Not ``wait_for``: it would wait for a cancelled ``stop()`` that ignores
    cancellation while the broker is unreachable; the task finishes (or is dropped) in the background."""
    stopping = asyncio.ensure_future(consumer.stop())
    await asyncio.wait({stopping}, timeout=5)
    stopping.add_done_callback(lambda t: t.cancelled() or t.exception())


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, creating the topic if the broker does not know it yet."""
    for attempt in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if attempt == 5:
            await _create_topic(consumer, topic)
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def _create_topic(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Create the topic on a fresh broker (production clusters declare it; see k8s/)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=consumer._client._bootstrap_servers)
    try:
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


class TopicBroadcast:
    """One broadcast topic between API replicas (``dm.hub.ReplicaBroadcast``): publish through the
    process's producer with a bounded wait, follow from the end of the topic."""

    def __init__(
        self, settings: Settings, topic: str, name: str, producer: Callable[[], AIOKafkaProducer | None]
    ) -> None:
        self._settings, self._topic, self._name, self._producer = settings, topic, name, producer

    async def publish(self, key: bytes, value: bytes) -> bool:
        """Publish one record within two seconds; False while no producer is connected."""
        producer = self._producer()
        if producer is None:
            return False
        await asyncio.wait_for(producer.send_and_wait(self._topic, value, key=key), timeout=2)
        return True

    async def follow(self, handle: Callable[[bytes], Awaitable[None]]) -> None:
        """Hand every record published from now on to ``handle``; reconnect after broker loss."""
        while True:
            consumer = broadcast_consumer(self._settings, self._name)
            try:
                await asyncio.wait_for(consumer.start(), timeout=10)
                partitions = await asyncio.wait_for(topic_partitions(consumer, self._topic), timeout=10)
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=500)
                    for records in batches.values():
                        for record in records:
                            await handle(record.value or b"{}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s feed lost (%r); reconnecting", self._name, exc)
            finally:
                await stop_consumer(consumer)
            await asyncio.sleep(1)
