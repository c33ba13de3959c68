"""The payload codec: AES-256-GCM under the current key, any key of the ring decrypts, a clear error for
an unknown key or altered data, and an unencrypted payload refused (non-retryable) unless the codec reads
histories for people (``accept_plain``)."""

from __future__ import annotations

import base64

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from config import Settings
from config.settings import parse_payload_keys
from temporal.client import data_converter
from temporal.codec import (
    ENCODING,
    KEY_ID,
    NOT_ENCRYPTED,
    EncryptionCodec,
    PayloadDecryptionError,
    generate_key_entry,
)
from temporal.push import like_push

SECRET = "refresh-token-7f3a9c"


def ring(*ids: str) -> list[tuple[str, bytes]]:
    return parse_payload_keys(",".join(generate_key_entry(i) for i in ids))


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


async def test_round_trip_keeps_metadata_and_data_and_hides_both() -> None:
    codec = EncryptionCodec(ring("k1"))
    original = [plain(SECRET), Payload(metadata={"encoding": b"binary/null"})]
    encoded = await codec.encode(original)
    for payload in encoded:
        assert dict(payload.metadata) == {"encoding": ENCODING, KEY_ID: b"k1"}
        assert SECRET.encode() not in payload.data and b"json/plain" not in payload.data
    assert await codec.decode(encoded) == original
    # A fresh nonce each time: the same payload never encrypts to the same bytes twice.
    assert (await codec.encode(original))[0].data != encoded[0].data


async def test_the_pydantic_converter_encrypts_models_end_to_end() -> None:
    keys = generate_key_entry("k1")
    converter = data_converter(Settings(env="test", temporal_payload_keys=keys))  # type: ignore[arg-type]
    request = like_push(424242, 2, 3, 2024012017042712)
    [payload] = await converter.encode([request])
    assert payload.metadata[KEY_ID] == b"k1"
    assert b"424242" not in payload.data and b"2024012017042712" not in payload.data
    assert await converter.decode([payload], [type(request)]) == [request]


async def test_a_payload_of_the_old_key_decodes_after_rotation() -> None:
    old, new = ring("old")[0], ring("new")[0]
    written = await EncryptionCodec([old]).encode([plain(SECRET)])
    rotated = EncryptionCodec([new, old])
    assert await rotated.decode(written) == [plain(SECRET)]
    assert (await rotated.encode([plain(SECRET)]))[0].metadata[KEY_ID] == b"new"


async def test_an_unknown_key_id_is_a_clear_error() -> None:
    written = await EncryptionCodec(ring("gone")).encode([plain(SECRET)])
    with pytest.raises(PayloadDecryptionError, match="key id 'gone', which is not in the keyring"):
        await EncryptionCodec(ring("k1")).decode(written)


async def test_the_same_id_with_another_key_does_not_authenticate() -> None:
    written = await EncryptionCodec(ring("k1")).encode([plain(SECRET)])
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await EncryptionCodec(ring("k1")).decode(written)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "truncated", "key id"])
async def test_altered_payloads_are_refused(where: str) -> None:
    keys = ring("k1", "k2")
    [payload] = await EncryptionCodec(keys).encode([plain(SECRET)])
    data = bytearray(payload.data)
    if where == "truncated":
        del data[-1]
    elif where == "key id":  # the id is bound as associated data: relabelling is detected too
        payload.metadata[KEY_ID] = b"k2"
    else:
        data[{"nonce": 0, "ciphertext": 14, "tag": -1}[where]] ^= 0x01
    payload.data = bytes(data)
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await EncryptionCodec(keys).decode([payload])


@pytest.mark.parametrize(
    "payload",
    [plain(SECRET), Payload(metadata={"encoding": b"json/protobuf"}, data=b"{}"), Payload(data=b"x")],
    ids=["json", "protobuf", "no-encoding"],
)
async def test_an_unencrypted_payload_is_refused_for_good_without_quoting_it(payload: Payload) -> None:
    codec = EncryptionCodec(ring("k1"))
    sealed = await codec.encode([plain("a")])
    with pytest.raises(ApplicationError) as info:  # beside an encrypted one too
        await codec.decode([*sealed, payload])
    assert (info.value.type, info.value.non_retryable) == (NOT_ENCRYPTED, True)
    assert info.value.message.startswith("payload is not encrypted (encoding ")
    assert SECRET not in info.value.message


async def test_the_pydantic_converter_refuses_a_plain_start_input() -> None:
    """What a ``temporal workflow start --input '{...}'`` without the codec server sends."""
    keys = generate_key_entry("k1")
    converter = data_converter(Settings(env="test", temporal_payload_keys=keys))  # type: ignore[arg-type]
    request = like_push(424242, 2, 3, 2024012017042712)
    [payload] = await pydantic_data_converter.encode([request])
    with pytest.raises(ApplicationError, match="payload is not encrypted"):
        await converter.decode([payload], [type(request)])


async def test_readers_of_histories_accept_unencrypted_payloads() -> None:
    old = [plain(SECRET), Payload(metadata={"encoding": b"json/protobuf"}, data=b"{}")]
    assert await EncryptionCodec(ring("k1"), accept_plain=True).decode(old) == old


def test_keys_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(ValueError, match="has 16 bytes, not 32"):
        parse_payload_keys(f"k1:{base64.b64encode(bytes(16)).decode()}")
