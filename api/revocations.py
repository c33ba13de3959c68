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

from prometheus_client import Gauge

from accounts.revocations import RevocationView
from api.kafka import CONSUMER_LAG, broadcast_consumer, stop_consumer, topic_partitions
from api.resources import Resources

log = logging.getLogger(__name__)

VIEW_READY = Gauge("sosohappy_revocation_view_ready", "1 when the in-memory revocation view is caught up")


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
        consumer = broadcast_consumer(res.settings, "revocations")
        try:
            await asyncio.wait_for(consumer.start(), timeout=10)
            partitions = await asyncio.wait_for(topic_partitions(consumer, topic), timeout=10)
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
                positions = {tp: int(await consumer.position(tp)) for tp in partitions}
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
            await stop_consumer(consumer)
        await asyncio.sleep(1)
