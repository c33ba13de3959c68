"""The broadcast follower against a real broker that restarts empty: it notices the re-created topic
(positions past the new end, other partitions) and reads the new topic from its beginning, so every
record published after the restart arrives (at least once; the DM hub drops repeats by message id)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from api import kafka
from api.kafka import (
    WATCH_SECONDS,
    ReplicaFeed,
    TopicBroadcast,
    TopicReset,
    TopicWatch,
    broadcast_consumer,
    broadcast_producer,
)
from api.relay_seal import RecordSeal
from config import Settings
from config.settings import parse_relay_keys
from devstack.processes import ManagedProcess, broker_argv, free_port
from dm.hub import RecentIds
from temporal.codec import generate_key_entry
from tests.fixtures.waiting import eventually

DEADLINE = 120  # seconds a condition may take on a loaded machine
SEAL = RecordSeal(parse_relay_keys(generate_key_entry("follow-test")))  # the broadcasts are sealed


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int]]:
    port = free_port()
    proc = ManagedProcess("kafka", broker_argv(port), tmp_path / "kafka.log").start().wait_for_port(port)
    try:
        yield proc, port
    finally:
        proc.stop()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    async def probe() -> bool:
        return predicate()

    await eventually(probe, what, deadline_seconds=DEADLINE)


def _recorder() -> tuple[list[bytes], Callable[[bytes], Awaitable[None]]]:
    """A list and a record handler that appends each value to it."""
    values: list[bytes] = []

    async def handle(value: bytes) -> None:
        values.append(value)

    return values, handle


def _follow(settings: Settings, broadcast: TopicBroadcast, handle: Callable[[bytes], Awaitable[None]]) -> Any:
    """``broadcast`` followed alone, through a feed of its own, as a running task."""
    return asyncio.create_task(ReplicaFeed(settings, "follow-test", [broadcast.followed(handle)]).run())


def _seen(values: list[bytes], prefix: bytes, count: int = 1) -> Callable[[], bool]:
    """Whether ``values`` holds at least ``count`` values starting with ``prefix``."""
    return lambda: sum(v.startswith(prefix) for v in values) >= count


def _all_in(sent: list[bytes], values: list[bytes]) -> Callable[[], bool]:
    """Whether every value of ``sent`` is in ``values``."""
    return lambda: all(v in values for v in sent)


def _resets(topic: str) -> float:
    return REGISTRY.get_sample_value("sosohappy_kafka_topic_resets_total", {"topic": topic}) or 0.0


async def _publish_until(broadcast: TopicBroadcast, prefix: bytes, arrived: object) -> list[bytes]:
    """Publish ``<prefix> <n>`` every 0.3 s (the producer may be reconnecting) until ``arrived()``;
    the values whose publish the broker acknowledged."""
    sent: list[bytes] = []
    deadline, n = time.monotonic() + DEADLINE, 0
    while not arrived():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {prefix!r} record reached the follower within {DEADLINE} s")
        value = b"%s %d" % (prefix, n)
        n += 1
        try:
            if await broadcast.publish(str(n).encode(), value):
                sent.append(value)
        except Exception:  # the producer reconnects on its own; publish again
            pass
        await asyncio.sleep(0.3)
    return sent


def test_one_feed_follows_two_topics_through_a_broker_that_restarts_empty(
    broker: tuple[ManagedProcess, int], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, port = broker
    local = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    topics = ("follow-test", "follow-test-keyed")
    consumers: list[AIOKafkaConsumer] = []

    def counted(settings: Settings, name: str) -> AIOKafkaConsumer:
        consumers.append(broadcast_consumer(settings, name))
        return consumers[-1]

    monkeypatch.setattr(kafka, "broadcast_consumer", counted)

    async def scenario() -> dict[str, list[bytes]]:
        producer = broadcast_producer(local)
        await producer.start()
        recorders = {topic: _recorder() for topic in topics}
        received = {topic: values for topic, (values, _) in recorders.items()}
        broadcasts = {
            topic: TopicBroadcast(topic, lambda: producer, SEAL, partitions=1 + 3 * i)
            for i, topic in enumerate(topics)
        }
        feed = ReplicaFeed(local, "feed-test", [broadcasts[t].followed(recorders[t][1]) for t in topics])
        follower = asyncio.create_task(feed.run())
        resets_before = {topic: _resets(topic) for topic in topics}
        try:
            for topic in topics:
                # Until the feed stands at the end of the topic, probes may be missed: publish until one lands.
                await _publish_until(
                    broadcasts[topic],
                    b"probe",
                    _seen(received[topic], b"probe"),
                )
                for i in range(5):
                    await broadcasts[topic].publish(str(i).encode(), b"before %d" % i)
            for topic in topics:
                await _until(
                    _seen(received[topic], b"before", 5),
                    "the records before",
                )
            assert len(consumers) == 1  # both topics through one consumer

            proc.stop()
            proc.start().wait_for_port(port)  # empty: the topics and their offsets are gone

            for topic in topics:
                sent = await _publish_until(
                    broadcasts[topic],
                    b"after",
                    _seen(received[topic], b"after"),
                )
                # Every record published after the restart arrives (read from the new topic's beginning).
                await _until(_all_in(sent, received[topic]), "every record after the restart")
            assert any(_resets(topic) > resets_before[topic] for topic in topics)
            return received
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await producer.stop()

    received = asyncio.run(scenario())
    for topic in topics:
        before = [v for v in received[topic] if v.startswith(b"before")]
        assert sorted(before) == [b"before %d" % i for i in range(5)]  # once each: no reset without a restart


def test_a_partitioned_broadcast_keeps_each_keys_records_in_order(
    broker: tuple[ManagedProcess, int], settings: Settings
) -> None:
    """The DM topic's layout: created with the configured partitions by the follower on a broker that
    does not know it, records spread over them by key, each key's records handed over in order."""
    _, port = broker
    local = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    topic, keys = "partitioned-test", [str(k).encode() for k in range(12)]

    async def scenario() -> tuple[set[int], set[int], list[bytes]]:
        producer = broadcast_producer(local)
        await producer.start()
        observer = AIOKafkaConsumer(bootstrap_servers=local.kafka_bootstrap, group_id=None)
        await observer.start()
        received, handle = _recorder()
        broadcast = TopicBroadcast(topic, lambda: producer, SEAL, partitions=4)
        follower = _follow(local, broadcast, handle)
        try:
            # Listing topics creates none: the follower is the one that creates it.
            deadline = time.monotonic() + DEADLINE
            while topic not in await observer.topics():
                assert time.monotonic() < deadline, "the follower did not create the topic"
                await asyncio.sleep(0.1)
            created = set(await producer.partitions_for(topic))  # it exists: asking creates nothing
            await _publish_until(broadcast, b"probe", lambda: any(v.startswith(b"probe") for v in received))
            for i in range(10):
                for key in keys:
                    assert await broadcast.publish(key, b"%s %d" % (key, i))
            await _until(
                lambda: sum(b" " in v and not v.startswith(b"probe") for v in received) == 120, "all"
            )
            tps = [TopicPartition(topic, p) for p in sorted(created)]
            observer.assign(tps)
            await observer.seek_to_beginning(*tps)
            used: set[int] = set()
            for _ in range(100):
                batches = await observer.getmany(timeout_ms=200)
                used |= {tp.partition for tp, records in batches.items() if records}
                if len(used) > 1:
                    break
            return created, used, received
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await observer.stop()
            await producer.stop()

    created, used, received = asyncio.run(scenario())
    assert created == {0, 1, 2, 3}
    assert len(used) > 1  # keyed records spread over the partitions
    for key in keys:
        mine = [v for v in received if v.split(b" ")[0] == key and not v.startswith(b"probe")]
        assert mine == [b"%s %d" % (key, i) for i in range(10)]  # once each, in order


class _ScriptedConsumer:
    """What ``TopicWatch`` asks of a consumer, answering from a script of (position, ``ListOffsets`` end,
    high watermark of the latest fetch answer) at each check."""

    def __init__(self, script: Sequence[tuple[int, int, int | None]]) -> None:
        self.script, self.step = script, 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def position(self, tp: TopicPartition) -> int:
        return self.script[self.step][0]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.script[self.step][1] for tp in tps}

    def highwater(self, tp: TopicPartition) -> int | None:
        highwater = self.script[self.step][2]
        self.step += 1  # asked last at each check
        return highwater


def _checks(script: Sequence[tuple[int, int, int | None]]) -> int:
    """How many checks of ``script`` a ``TopicWatch`` passes before raising a reset."""
    topic, now = "watch-test", [0.0]
    watch = TopicWatch(_ScriptedConsumer(script), topic, [TopicPartition(topic, 0)], clock=lambda: now[0])

    async def run() -> int:
        for done in range(len(script)):
            now[0] += WATCH_SECONDS  # a check is due each time: counted, not waited for
            try:
                await watch.check()
            except TopicReset:
                return done
        return len(script)

    return asyncio.run(run())


def test_an_end_offset_below_fetched_records_is_no_reset() -> None:
    # Tansu answers ListOffsets with the last batch's first offset + 1: below the records a fetch
    # returned when that batch holds several, for as long as no other batch follows. The fetch answers'
    # high watermark is the partition's real end.
    lagging = [(100 * i + 20, 100 * i + 2, 100 * i + 20) for i in range(1, 10)]
    assert _checks(lagging + [(920, 902, 920)] * 20) == 29
    assert _checks([(0, 0, None), (5, 1, None)]) == 2  # no fetch answered yet: nothing to compare


def test_a_broker_back_empty_is_a_reset_at_the_second_check() -> None:
    # The consumer stands at 500; the restarted broker's fetch answers say the partition ends lower.
    assert _checks([(500, 500, 500)] + [(500, 3 * i, 3 * i) for i in range(10)]) == 2


def test_the_hub_relays_a_repeated_record_once() -> None:
    recent = RecentIds(size=3)
    assert [recent.first_time(i) for i in ["a", "b", "a", "c", "b"]] == [True, True, False, True, False]
    assert recent.first_time("d")  # the oldest, "a", is forgotten: the set stays bounded
    assert recent.first_time("c") is False and recent.first_time("a") is True


def test_records_reach_a_topic_re_created_with_fewer_partitions(
    broker: tuple[ManagedProcess, int], settings: Settings
) -> None:
    # A broker back empty may re-create a topic with fewer partitions than before (Tansu creates an
    # unknown topic with 4 on the first metadata request naming it). Every keyed record published after
    # that reaches the follower: the producer publishes over the new layout, not the old one.
    proc, port = broker
    local = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    topic = "shrinking-test"

    async def create(partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=local.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        await create(8)
        producer = broadcast_producer(local)
        await producer.start()
        received, handle = _recorder()
        broadcast = TopicBroadcast(topic, lambda: producer, SEAL, partitions=8)
        follower = _follow(local, broadcast, handle)
        try:
            await _publish_until(broadcast, b"probe", _seen(received, b"probe"))
            assert len(producer.client.cluster.partitions_for_topic(topic) or ()) == 8

            proc.stop()
            proc.start().wait_for_port(port)
            await create(1)  # back empty, and the topic comes back smaller

            await _publish_until(broadcast, b"after", _seen(received, b"after"))
            sent = [b"key %d" % i for i in range(16)]
            for i, value in enumerate(sent):  # keys that hashed over all 8 partitions before
                assert await broadcast.publish(str(i).encode(), value)
            await _until(_all_in(sent, received), "every keyed record after the topic shrank")
            return sent, received
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await producer.stop()

    sent, received = asyncio.run(scenario())
    assert sorted(v for v in received if v.startswith(b"key")) == sorted(sent)
