"""The DM topic between two API replica processes holds no readable message: whoever reads it raw (a Kafka
operator, a consumer credential, a broker's disk) finds no text and no nickname, while the receiver on
the other replica gets the message; a replica still sealing under the old key is read by one that holds
the new key too (rotation); and records nobody can open are dropped without stopping the relay."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from activities.deps import ActivityDeps
from config import Settings
from devstack.processes import ManagedProcess, broker_argv, free_port
from temporal.codec import generate_key_entry
from tests.api.dm_helpers import HEARTBEAT_SECONDS, _user_id, wait_until_seen
from tests.api.test_dm_socket import (
    FRAME_WAIT,
    Cluster,
    _env,
    _frame,
    _member,
    _replica,
    _silent,
    _socket,
    _wait,
    replica_cluster,
)
from tests.fixtures.ios_client import IOSClient

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dm-sealed-replicas")


@pytest.fixture(scope="module")
def cluster(settings: Settings, logs: Path, api_url: str) -> Iterator[Cluster]:
    """Two API replica processes on a broker of their own, beating every second (presence is seen soon)."""
    yield from replica_cluster(settings, logs, dm_heartbeat_seconds=HEARTBEAT_SECONDS)


def _dm_records(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record the topic holds, read raw as any consumer of the broker could."""

    async def read() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            assert tps, f"the broker has no topic {topic}"
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[ConsumerRecord] = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


def _send_across(
    deps: ActivityDeps, sender: IOSClient, receiver: IOSClient, sender_at: str, receiver_at: str, text: str
) -> None:
    """``sender`` (on the replica at ``sender_at``) messages ``receiver`` (only on ``receiver_at``), who
    gets it through the topic."""
    with _socket(receiver, receiver_at) as inbox, _socket(sender, sender_at) as ws:
        wait_until_seen(deps, receiver, sender)  # the sender's replica knows where the receiver is
        ws.send(_frame(sender, receiver, text))
        assert json.loads(inbox.recv(timeout=FRAME_WAIT))["text"] == text


def test_the_dm_topic_holds_no_message_text_or_nickname(
    http: httpx.Client, cluster: Cluster, settings: Settings, activity_deps: ActivityDeps
) -> None:
    alice, bob = _member(http), _member(http)
    text = "비밀 이야기 " + uuid.uuid4().hex
    _send_across(activity_deps, bob, alice, cluster.a, cluster.b, text)

    records = _dm_records(f"127.0.0.1:{cluster.broker_port}", settings.kafka_dm_topic)
    mine = [r for r in records if r.key == str(_user_id(alice)).encode()]
    assert mine, "the relayed record and alice's presence announcements are on the topic"
    secrets = [text.encode(), text.split()[-1].encode(), "비밀".encode(), alice.nickname.encode()]
    secrets.append(bob.nickname.encode())
    readable = [(r.partition, r.offset) for r in records if any(s in (r.value or b"") for s in secrets)]
    assert readable == [], "message text or nicknames readable on the topic"
    for record in records:
        with pytest.raises(ValueError):
            json.loads(record.value or b"")  # not even the shape of a record: no ids, no origins


def test_unreadable_records_are_dropped_and_the_next_message_arrives(
    http: httpx.Client, cluster: Cluster, settings: Settings, activity_deps: ActivityDeps, logs: Path
) -> None:
    alice, bob, carol = _member(http), _member(http), _member(http)
    text = "그 다음 " + uuid.uuid4().hex
    _send_across(activity_deps, bob, carol, cluster.a, cluster.b, "copied " + text)
    bootstrap, topic = f"127.0.0.1:{cluster.broker_port}", settings.kafka_dm_topic
    carols, alices = str(_user_id(carol)).encode(), str(_user_id(alice)).encode()
    genuine = [r.value for r in _dm_records(bootstrap, topic) if r.key == carols and r.value]
    log_b = logs / "api-b.log"
    dropped_before = log_b.read_text(errors="replace").count("dropped unopened")

    async def forge() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            frame = _frame(bob, alice, "forged")
            plain = {"origin": "x", "receiver_id": _user_id(alice), "id": uuid.uuid4().hex, "frame": frame}
            for value in [json.dumps(plain).encode(), b"", b"\x01\x05other" + bytes(40), *genuine]:
                await producer.send_and_wait(topic, value, key=alices)  # carol's records replayed to alice
        finally:
            await producer.stop()

    with _socket(alice, cluster.b) as inbox, _socket(bob, cluster.a) as ws:
        wait_until_seen(activity_deps, alice, bob)
        asyncio.run(forge())
        ws.send(_frame(bob, alice, text))
        assert json.loads(inbox.recv(timeout=FRAME_WAIT))["text"] == text  # nothing forged before it
        assert _silent(inbox)
    log = log_b.read_text(errors="replace")
    assert log.count("dropped unopened") - dropped_before >= 3 + len(genuine)
    assert "copied" not in log and "forged" not in log  # the lines name no content


def test_a_replica_holding_the_new_and_old_keys_opens_what_the_old_key_sealed(
    http: httpx.Client, settings: Settings, activity_deps: ActivityDeps, tmp_path: Path, api_url: str
) -> None:
    old, new = generate_key_entry("relay-old"), generate_key_entry("relay-new")
    port = free_port()
    broker = ManagedProcess("kafka", broker_argv(port), tmp_path / "kafka.log").start().wait_for_port(port)
    procs = [broker]
    try:
        common = {"kafka_bootstrap": f"127.0.0.1:{port}", "worker_metrics_port": 0}
        common["dm_heartbeat_seconds"] = HEARTBEAT_SECONDS
        # Mid-rotation: a replica not rolled yet (the old key alone) beside one with the new key first.
        a, a_at = _replica("api-old", _env(settings, relay_keys=old, **common), tmp_path)
        procs.append(a)
        b, b_at = _replica("api-new", _env(settings, relay_keys=f"{new},{old}", **common), tmp_path)
        procs.append(b)
        for at in (a_at, b_at):
            _wait(lambda at=at: httpx.get(f"http://{at}/readyz").status_code == 200, 60)
        alice, bob = _member(http), _member(http)
        _send_across(activity_deps, bob, alice, a_at, b_at, "sealed under the old key")
        # The other way the old replica cannot open what the new key sealed: why a new key is added to
        # every replica before any seals with it (README "Relay encryption").
        log_a = tmp_path / "api-old.log"

        def dropped() -> int:
            return log_a.read_text(errors="replace").count("unknown_key (key id 'relay-new')")

        with _socket(bob, a_at) as inbox, _socket(alice, b_at) as ws:
            wait_until_seen(activity_deps, bob, alice)  # alice's announcements (new key) were dropped too
            before = dropped()
            ws.send(_frame(alice, bob, "sealed under the new key"))
            _wait(lambda: dropped() > before, 60)
            assert _silent(inbox)
    finally:
        for proc in reversed(procs):
            proc.stop()
