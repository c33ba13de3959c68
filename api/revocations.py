"""Which logins and accounts are revoked, known in memory by every API replica through a Kafka topic.

Requests are authenticated from the JWT plus this view, with no database round trip. Until the view has
read the topic up to the end offsets it saw at start (or after losing the broker), it answers
``None`` and callers ask the database instead. Revocations are written to the database first, so the
database is always the truth; the topic only spreads them within a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Gauge

from accounts.revocations import RevocationView
from api.resources import Resources

log = logging.getLogger(__name__)

VIEW_READY = Gauge("sosohappy_revocation_view_ready", "1 when the in-memory revocation view is caught up")
CONSUMER_LAG = Gauge("sosohappy_kafka_consumer_lag", "Messages behind the end of a topic", ["topic"])


async def publish_revocation(res: Resources, kind: str, ident: str | int, user_id: int) -> None:
    """Tell every replica (this one at once) that a login or an account is revoked."""
    event: dict[str, object] = {"kind": kind, "id": ident, "at": time.time()}
    view: RevocationView = res.revocations
    view.apply(event)
    producer = res.producer
    if producer is None:
        log.warning(
            "revocation of %s %s not broadcast: Kafka is down (replicas read the database)", kind, ident
        )
        return
    try:
        await asyncio.wait_for(
            producer.send_and_wait(
                res.settings.kafka_token_topic, json.dumps(event).encode(), key=str(user_id).encode()
            ),
            timeout=2,
        )
    except Exception:
        log.exception("revocation of %s %s not broadcast", kind, ident)


async def follow_revocations(res: Resources) -> None:
    """Consume the token topic forever, reconnecting after broker loss; keeps ``view.ready`` honest."""
    view: RevocationView = res.revocations
    topic = res.settings.kafka_token_topic
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=res.settings.kafka_bootstrap,
            group_id=None,
            client_id=f"revocations-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            fetch_max_wait_ms=res.settings.kafka_fetch_max_wait_ms,
            request_timeout_ms=5000,
        )
        try:
            await asyncio.wait_for(consumer.start(), timeout=10)
            partitions = await asyncio.wait_for(_partitions(consumer, topic), timeout=10)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            targets = await consumer.end_offsets(partitions)
            last_check = time.monotonic()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                for records in batches.values():
                    for record in records:
                        try:
                            view.apply(json.loads(record.value or b"{}"))
                        except (ValueError, KeyError, TypeError):
                            log.warning("ignoring malformed revocation event at offset %s", record.offset)
                positions = {tp: await _position(consumer, tp) for tp in partitions}
                if not view.ready and all(positions[tp] >= off for tp, off in targets.items()):
                    view.ready = True
                    VIEW_READY.set(1)
                    log.info("revocation view caught up")
                if time.monotonic() - last_check > 1:
                    last_check = time.monotonic()
                    ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=3)
                    lag = sum(ends[tp] - positions[tp] for tp in partitions)
                    CONSUMER_LAG.labels(topic).set(lag)
                    view.forget_expired()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("revocation feed lost (%r); authenticating against the database meanwhile", exc)
        finally:
            view.ready = False
            VIEW_READY.set(0)
            # Not wait_for: it would wait for a cancelled stop() that ignores cancellation while the
            # broker is unreachable; the task finishes (or is dropped) in the background.
            stopping = asyncio.ensure_future(consumer.stop())
            await asyncio.wait({stopping}, timeout=5)
            stopping.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.sleep(1)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
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


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    return int(await consumer.position(tp))
