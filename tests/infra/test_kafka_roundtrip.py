"""The Kafka-protocol broker: produce, then consume within a consumer group, with committed offsets."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def test_produce_consume_with_a_consumer_group(kafka_bootstrap: str) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(3):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=b"user-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    try:
        got: list[tuple[bytes | None, bytes | None]] = []
        while len(got) < 3:
            msg = await asyncio.wait_for(consumer.getone(), timeout=10)
            got.append((msg.key, msg.value))
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    assert got == [(b"user-1", b"value-0"), (b"user-1", b"value-1"), (b"user-1", b"value-2")]
    assert committed == 3
