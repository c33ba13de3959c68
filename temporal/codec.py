"""AES-256-GCM encryption of every Temporal payload, with a keyring so keys can rotate.

An encoded payload is ``metadata = {encoding: binary/encrypted, encryption-key-id: <id>}`` and
``data = nonce || AES-GCM(serialized inner Payload)``, the key id bound as associated data. The first key
of the ring encrypts; every key decrypts.

Decoding refuses a payload without the encrypted marker (``PayloadNotEncrypted``): every payload our
processes write is encrypted, so a plain one was written by someone without a key, e.g. a
``temporal workflow start --input '{...}'`` without the codec server. In a worker the refusal fails the
workflow (non-retryable ``ApplicationError``) before any of its code runs on that input. Only readers of
histories for people accept plain payloads (``accept_plain``): the codec server's ``/decode`` and the
replay of the recorded test histories, which are stored decoded. A payload under a key id that is not in
the ring, or that does not authenticate, stays a retryable ``PayloadDecryptionError`` (a key dropped too
early is fixed by putting it back). Search attributes are not payloads of the codec and stay readable
(they hold ids only).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec
from temporalio.exceptions import ApplicationError

from config import Settings
from config.settings import PAYLOAD_KEY_BYTES, parse_payload_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
#: Where env local/test keeps its generated key when ``SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS`` is unset.
LOCAL_KEY_FILE = "temporal-payload-keys"
#: ``ApplicationError`` type of a payload refused because it is not encrypted.
NOT_ENCRYPTED = "PayloadNotEncrypted"


class PayloadDecryptionError(ValueError):
    """A payload marked encrypted cannot be decrypted: unknown key id, or altered or truncated data."""


def refuse_plain(payload: Payload) -> ApplicationError:
    """The non-retryable error of a payload that is not encrypted (naming its encoding, never its data)."""
    encoding = payload.metadata.get("encoding", b"").decode(errors="replace") or "none"
    return ApplicationError(
        f"payload is not encrypted (encoding {encoding!r}): refused; every payload of SoSoHappy's "
        "processes is encrypted with a key of SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS (start workflows by hand "
        "through the codec server: --codec-endpoint)",
        type=NOT_ENCRYPTED,
        non_retryable=True,
    )


class EncryptionCodec(PayloadCodec):
    """Encrypts with the first key of ``keys``, decrypts with whichever key the payload names, and
    refuses a payload that is not encrypted unless ``accept_plain`` (readers of histories only)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, accept_plain: bool = False) -> None:
        if not keys:
            raise ValueError("the payload keyring is empty")
        self.accept_plain = accept_plain
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self.current_key_id = keys[0][0]
        self._current = self._ciphers[self.current_key_id]
        self._current_id_bytes = self.current_key_id.encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload encrypted whole (metadata included) under the current key."""
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload decrypted; any other payload refused (``PayloadNotEncrypted``), or
        returned as it is with ``accept_plain``."""
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._current.encrypt(nonce, payload.SerializeToString(), self._current_id_bytes)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._current_id_bytes}, data=nonce + sealed)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            if self.accept_plain:
                return payload
            raise refuse_plain(payload)
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r}, which is not in the keyring "
                f"(known: {', '.join(sorted(self._ciphers))}); add it to SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS"
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload under key id {key_id!r} does not authenticate (altered or truncated)"
            ) from None
        inner = Payload()
        inner.ParseFromString(plain)
        return inner


def generate_key_entry(key_id: str) -> str:
    """A new ``id:base64key`` entry with a random 32-byte key."""
    return f"{key_id}:{base64.b64encode(os.urandom(PAYLOAD_KEY_BYTES)).decode()}"


def local_key_file(data_dir: Path, name: str = LOCAL_KEY_FILE) -> Path:
    """A generated keyring of env local/test (``name`` in ``data_dir``; by default the payload keys'):
    created once (mode 0600), then reused across restarts and by every process of that data folder."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        draft = data_dir / f".{name}.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(generate_key_entry("local-1") + "\n")
        try:
            os.link(draft, path)  # appears whole or not at all; a concurrent first start keeps its own
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path


def payload_keys(settings: Settings) -> list[tuple[str, bytes]]:
    """The keyring of ``settings``: the configured keys, or (local/test only) the generated local one."""
    if settings.temporal_payload_keys is not None:
        return parse_payload_keys(settings.temporal_payload_keys.get_secret_value())
    # Each process needing the keys refuses to start without them (config.processes); kept so that
    # no path encrypts with nothing.
    if not settings.is_local:
        raise ValueError("SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS is required outside local/test")
    return parse_payload_keys(local_key_file(settings.data_dir).read_text().strip())


def encryption_codec(settings: Settings, *, accept_plain: bool = False) -> EncryptionCodec:
    """The codec every client of ``settings`` uses (``accept_plain``: a reader of histories for people,
    never a worker or a client that acts on what it decodes)."""
    return EncryptionCodec(payload_keys(settings), accept_plain=accept_plain)
