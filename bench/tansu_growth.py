"""How the Tansu broker's CPU grows with what a topic holds, for several partition counts.

    .venv/bin/python -m bench.tansu_growth [--seconds 100] [--rate 200] [--partitions 1 4 16 32]

For each partition count: a fresh broker (``devstack.processes.broker_argv``), a topic with that many
partitions beside a one-partition topic (the replicas' feed reads both), two consumers reading every
partition at its end as the API's feed does (``fetch_max_wait_ms`` 20), and one producer sending
keyed records at ``--rate`` per second, each stamped with its send time. Every 20 s it prints the
records stored so far, the broker's CPU (% of one core) and the consumers' p50 / p99 latency.

Seen on 2026-12-07 (200 records/s; bench/HISTORY.md, "More partitions do not stop the broker's
growth"): the broker's CPU rises with the records stored for every partition count; from 16 partitions
up the rise no longer shrinks with the count.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import subprocess
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cli import stop_on_sigterm
from bench.devserver import pct
from bench.feed import cpu_seconds
from devstack.processes import broker_argv, free_port

WINDOW = 20.0  # seconds per printed line


async def _follow(consumer: AIOKafkaConsumer, latencies: list[float]) -> None:
    while True:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            now = time.perf_counter()
            latencies.extend(now - float(r.value or b"0") for r in records)


async def run(bootstrap: str, partitions: int, seconds: float, rate: float, broker: int) -> None:
    """Produce at ``rate`` for ``seconds`` while two consumers follow; print a line per window."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("dm", partitions, 1), NewTopic("tokens", 1, 1)])
    await admin.close()
    assigned = [TopicPartition("dm", p) for p in range(partitions)] + [TopicPartition("tokens", 0)]
    consumers = []
    for _ in range(2):
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await consumer.start()
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        consumers.append(consumer)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    latencies: list[float] = []
    followers = [asyncio.create_task(_follow(c, latencies)) for c in consumers]
    sends: set[asyncio.Future[object]] = set()
    started = window = time.perf_counter()
    cpu, sent = cpu_seconds(broker), 0
    while time.perf_counter() - started < seconds:
        sent += 1
        key = str(random.randint(1, 40)).encode()  # receivers, as the DM relay keys its records
        send = asyncio.ensure_future(producer.send_and_wait("dm", str(time.perf_counter()).encode(), key=key))
        sends.add(send)
        send.add_done_callback(sends.discard)
        await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        if (span := time.perf_counter() - window) >= WINDOW:
            now_cpu = cpu_seconds(broker)
            print(
                f"partitions {partitions:3d}  {time.perf_counter() - started:5.0f} s  stored {sent:7,d}  "
                f"broker CPU {100 * (now_cpu - cpu) / span:5.1f}%  consumer p50 "
                f"{pct(latencies, 0.5) if latencies else math.nan:6.1f} ms  "
                f"p99 {pct(latencies, 0.99) if latencies else math.nan:6.1f} ms",
                flush=True,
            )
            cpu, window = now_cpu, time.perf_counter()
            latencies.clear()
    for follower in followers:
        follower.cancel()
    await asyncio.gather(*sends, return_exceptions=True)
    for consumer in consumers:
        await consumer.stop()
    await producer.stop()


def main() -> None:
    """Parse the options and measure each partition count on its own broker."""
    parser = argparse.ArgumentParser(prog="python -m bench.tansu_growth", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=100.0, help="seconds per partition count")
    parser.add_argument("--rate", type=float, default=200.0, help="records per second")
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()
    stop_on_sigterm()
    for partitions in args.partitions:
        port = free_port()
        broker = subprocess.Popen(broker_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            asyncio.run(run(f"127.0.0.1:{port}", partitions, args.seconds, args.rate, broker.pid))
        finally:
            broker.terminate()
            broker.wait(timeout=10)


if __name__ == "__main__":
    main()
