"""The sealing of the records API replicas relay over Kafka (``api.relay_seal``): what a sealed value
binds, how keys rotate, and, on a real broker, that a replica's feed opens records sealed under an older
key it still holds and drops (counted, logged without content) what it cannot open, going on with the
next record."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from pydantic import ValidationError

from api.kafka import ReplicaFeed, TopicBroadcast, broadcast_producer
from api.relay_seal import FORMAT, NONCE_BYTES, RecordSeal, UnreadableRecord, relay_keys, relay_seal
from config import Settings
from config.processes import Process, problems
from config.settings import parse_relay_keys
from temporal.codec import generate_key_entry
from tests.fixtures.waiting import eventually

DEADLINE = 120  # seconds a condition may take on a loaded machine
TOPIC, KEY = "sosohappy.direct-messages", b"42"


def _ring(*ids: str) -> list[tuple[str, bytes]]:
    return parse_relay_keys(",".join(generate_key_entry(i) for i in ids))


OLD, NEW = _ring("relay-old"), _ring("relay-new")


def _reason(seal: RecordSeal, topic: str, key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(UnreadableRecord) as refused:
        seal.open(topic, key, value)
    return refused.value.reason


def test_a_sealed_value_holds_no_plaintext_and_opens_to_it() -> None:
    seal = RecordSeal(OLD)
    value = '{"frame": "{\\"text\\": \\"비밀 secret\\", \\"sender\\": \\"alice\\"}"}'.encode()
    sealed = seal.seal(TOPIC, KEY, value)
    assert b"secret" not in sealed and "비밀".encode() not in sealed and b"alice" not in sealed
    assert sealed[:2] == bytes((FORMAT, len(b"relay-old"))) and sealed[2:11] == b"relay-old"
    assert seal.open(TOPIC, KEY, sealed) == value
    assert seal.seal(TOPIC, KEY, value) != sealed  # a fresh nonce each time


def test_a_ring_seals_with_its_first_key_and_opens_under_every_key() -> None:
    old, rotated = RecordSeal(OLD), RecordSeal(NEW + OLD)
    assert rotated.current_key_id == "relay-new"
    from_old = old.seal(TOPIC, KEY, b"before the rotation")
    assert rotated.open(TOPIC, KEY, from_old) == b"before the rotation"  # the old key is still held
    from_new = rotated.seal(TOPIC, KEY, b"after")
    assert from_new[2:11] == b"relay-new"
    # A replica that does not hold the new key yet cannot open it (README "Relay encryption": add a key
    # everywhere before it seals).
    with pytest.raises(UnreadableRecord) as refused:
        old.open(TOPIC, KEY, from_new)
    assert refused.value.reason == "unknown_key" and refused.value.key_id == "relay-new"
    assert RecordSeal(OLD + NEW).open(TOPIC, KEY, from_new) == b"after"


def test_a_value_is_bound_to_its_record_key_topic_and_key_id() -> None:
    seal = RecordSeal(OLD + _ring("other"))
    sealed = seal.seal(TOPIC, KEY, b"for user 42")
    assert _reason(seal, TOPIC, b"43", sealed) == "not_authentic"  # replayed to another receiver
    assert _reason(seal, TOPIC, None, sealed) == "not_authentic"
    assert _reason(seal, "sosohappy.token-revocations", KEY, sealed) == "not_authentic"
    relabelled = bytes((FORMAT, 5)) + b"other" + sealed[11:]  # same nonce and ciphertext, another key id
    assert _reason(seal, TOPIC, KEY, relabelled) == "not_authentic"
    for position in (11, 11 + NONCE_BYTES, len(sealed) - 1):  # nonce, ciphertext, tag
        altered = bytearray(sealed)
        altered[position] ^= 1
        assert _reason(seal, TOPIC, KEY, bytes(altered)) == "not_authentic"


def test_anything_else_is_unreadable_and_never_another_error() -> None:
    seal = RecordSeal(OLD)
    assert _reason(seal, TOPIC, KEY, None) == "malformed"  # a tombstone
    assert _reason(seal, TOPIC, KEY, b"") == "malformed"
    assert _reason(seal, TOPIC, KEY, b'{"origin": "x", "frame": "hi"}') == "malformed"  # the old plain form
    assert _reason(seal, TOPIC, KEY, bytes((FORMAT, 200)) + b"short") == "malformed"
    unknown = RecordSeal(_ring("gone")).seal(TOPIC, KEY, b"x")
    assert _reason(seal, TOPIC, KEY, unknown) == "unknown_key"
    odd_id = bytes((FORMAT, 3)) + b"\xff\n{" + os.urandom(40)  # never logged as it is
    with pytest.raises(UnreadableRecord) as refused:
        seal.open(TOPIC, KEY, odd_id)
    assert refused.value.reason == "unknown_key" and refused.value.key_id is None
    for size in range(64):  # random bytes of every short length, and some sealed-looking ones
        for value in (os.urandom(size), bytes((FORMAT, 9)) + b"relay-old" + os.urandom(size)):
            with pytest.raises(UnreadableRecord):
                seal.open(TOPIC, KEY, value)


def test_relay_keys_come_from_their_own_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(name)
    entries = f"{generate_key_entry('r2')},{generate_key_entry('r1')}"
    assert [k for k, _ in relay_keys(Settings(env="test", relay_keys=entries))] == ["r2", "r1"]  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="SOSOHAPPY_RELAY_KEYS entry 1 is not `id:base64key`"):
        Settings(env="test", relay_keys="nokey")  # type: ignore[arg-type]
    long_id = generate_key_entry("r" * 65)
    with pytest.raises(
        ValidationError, match=re.escape("SOSOHAPPY_RELAY_KEYS key id 'rrrrrrrr'... is over 64")
    ):
        Settings(env="test", relay_keys=long_id)  # type: ignore[arg-type]
    production = Settings(env="production", jwt_secret="s" * 48)
    assert any(p.startswith("SOSOHAPPY_RELAY_KEYS is not set") for p in problems(production, Process.API))
    assert not [p for p in problems(production, Process.WORKER) if "RELAY" in p]  # the API's alone
    with pytest.raises(ValueError, match="SOSOHAPPY_RELAY_KEYS is required"):
        relay_keys(production)
    # Local/test without the setting: one key generated into the data folder, which every replica of it
    # shares, apart from the payload keys' file.
    first = relay_seal(Settings(env="local", data_dir=tmp_path))
    again = relay_seal(Settings(env="local", data_dir=tmp_path))
    assert again.open(TOPIC, KEY, first.seal(TOPIC, KEY, b"x")) == b"x"
    assert (tmp_path / "relay-keys").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "temporal-payload-keys").exists()


def _unreadable(topic: str, reason: str) -> float:
    labels = {"topic": topic, "reason": reason}
    return REGISTRY.get_sample_value("sosohappy_kafka_records_unreadable_total", labels) or 0.0


async def _until(predicate: Callable[[], bool], what: str) -> None:
    async def probe() -> bool:
        return predicate()

    await eventually(probe, what, deadline_seconds=DEADLINE)


async def _publish_until(broadcast: TopicBroadcast, arrived: Callable[[], bool]) -> None:
    """Publish probes until one reaches the feed (it reads from the topic's end once it stands there)."""
    deadline = time.monotonic() + DEADLINE
    while not arrived():
        assert time.monotonic() < deadline, "no probe reached the feed"
        await broadcast.publish(b"probe", b"probe")
        await asyncio.sleep(0.3)


def _feed(
    settings: Settings, broadcast: TopicBroadcast, handle: Callable[[bytes], Awaitable[None]]
) -> ReplicaFeed:
    return ReplicaFeed(settings, f"seal-test-{uuid.uuid4().hex[:6]}", [broadcast.followed(handle)])


def test_a_replica_opens_old_records_and_drops_unreadable_ones_going_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"seal-test-{uuid.uuid4().hex[:8]}"
    secret = "비밀 " + uuid.uuid4().hex

    async def scenario() -> list[bytes]:
        producer = broadcast_producer(settings)
        raw = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        await raw.start()
        received: list[bytes] = []

        async def handle(value: bytes) -> None:
            received.append(value)

        # The replica reading holds the new key and the old one; the other still seals with the old.
        reader = TopicBroadcast(topic, lambda: producer, RecordSeal(NEW + OLD), partitions=2)
        writer = TopicBroadcast(topic, lambda: producer, RecordSeal(OLD), partitions=2)
        feed = asyncio.create_task(_feed(settings, reader, handle).run())
        before = {r: _unreadable(topic, r) for r in ("malformed", "unknown_key", "not_authentic")}
        try:
            await _publish_until(writer, lambda: b"probe" in received)
            await writer.publish(KEY, b"sealed under the old key")
            genuine = RecordSeal(OLD).seal(topic, KEY, secret.encode())
            forged = [
                (
                    KEY,
                    b'{"origin": "x", "receiver_id": 42, "id": "1", "frame": "forged"}',
                ),  # the old plain form
                (KEY, None),
                (KEY, RecordSeal(_ring("stolen")).seal(topic, KEY, b"under a key nobody holds")),
                (b"43", genuine),  # a real record replayed to another receiver
                (KEY, genuine[:-1] + bytes((genuine[-1] ^ 1,))),  # tampered
            ]
            for key, value in forged:
                await raw.send_and_wait(topic, value, key=key)
            await writer.publish(KEY, b"the next real record")
            await _until(lambda: b"the next real record" in received, "the record after the unreadable ones")
            assert _unreadable(topic, "malformed") - before["malformed"] == 2
            assert _unreadable(topic, "unknown_key") - before["unknown_key"] == 1
            assert _unreadable(topic, "not_authentic") - before["not_authentic"] == 2
            assert not feed.done()  # the feed never stopped
            return received
        finally:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)
            await raw.stop()
            await producer.stop()

    with caplog.at_level(logging.WARNING, logger="api.kafka"):
        received = asyncio.run(scenario())
    assert [v for v in received if v != b"probe"] == [b"sealed under the old key", b"the next real record"]
    dropped = [r.getMessage() for r in caplog.records if "dropped unopened" in r.getMessage()]
    assert len(dropped) == 5 and any("key id 'stolen'" in line for line in dropped)
    assert secret not in caplog.text and "forged" not in caplog.text and "nobody holds" not in caplog.text
    assert not [r for r in caplog.records if "feed lost" in r.getMessage()]  # no reconnect either
