"""The broadcast follower against a real broker that restarts empty: it notices the re-created topic
(positions past the new end, other partitions) and reads the new topic from its beginning, so every
record published after the restart arrives (at least once; the DM hub drops repeats by message id)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from api.kafka import WATCH_SECONDS, TopicBroadcast, TopicReset, TopicWatch
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from dm.hub import RecentIds
from tests.fixtures.waiting import eventually

DEADLINE = 120  # seconds a condition may take on a loaded machine


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


def test_a_follower_survives_a_broker_that_restarts_empty(
    broker: tuple[ManagedProcess, int], settings: Settings
) -> None:
    proc, port = broker
    local = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    topic = "follow-test"

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=local.kafka_bootstrap, linger_ms=0, acks=1)
        await producer.start()
        received: list[bytes] = []

        async def handle(value: bytes) -> None:
            received.append(value)

        broadcast = TopicBroadcast(local, topic, "follow-test", lambda: producer)
        follower = asyncio.create_task(broadcast.follow(handle))
        resets_before = _resets(topic)
        try:
            # Until the follower stands at the end of the topic, probes may be missed: publish until one lands.
            await _publish_until(broadcast, b"probe", lambda: any(v.startswith(b"probe") for v in received))
            for i in range(5):
                await broadcast.publish(str(i).encode(), b"before %d" % i)
            await _until(lambda: sum(v.startswith(b"before") for v in received) == 5, "the records before")

            proc.stop()
            proc.start().wait_for_port(port)  # empty: the topic and its offsets are gone

            sent = await _publish_until(
                broadcast, b"after", lambda: any(v.startswith(b"after") for v in received)
            )
            # Every record published after the restart arrives (read from the new topic's beginning).
            await _until(lambda: all(v in received for v in sent), "every record after the restart")
            assert _resets(topic) > resets_before
            return received
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            await producer.stop()

    received = asyncio.run(scenario())
    before = [v for v in received if v.startswith(b"before")]
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
        producer = AIOKafkaProducer(bootstrap_servers=local.kafka_bootstrap, linger_ms=0, acks=1)
        await producer.start()
        observer = AIOKafkaConsumer(bootstrap_servers=local.kafka_bootstrap, group_id=None)
        await observer.start()
        received: list[bytes] = []

        async def handle(value: bytes) -> None:
            received.append(value)

        broadcast = TopicBroadcast(local, topic, "partitioned-test", lambda: producer, partitions=4)
        follower = asyncio.create_task(broadcast.follow(handle))
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
