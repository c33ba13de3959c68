"""AES-256-GCM sealing of the records API replicas relay to each other over Kafka (the DM topic: message
text and nicknames, socket and presence announcements), with a keyring so keys can rotate.

A sealed value is ``0x01 || len(key id) || key id || 12-byte nonce || AES-GCM(value)``. The associated
data binds the value's first part (format and key id), the topic and the Kafka record's key (the
receiver's or announcer's user id, which picks the partition): a value moved to another record key or
topic, or relabelled with another key id, does not authenticate. The first key of the ring seals;
every key opens (``SOSOHAPPY_RELAY_KEYS``, as ``temporal.codec`` does with the payload keys). What stays
readable on the topic: the record key (a user id), the record's size and time, and the key id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config import Settings
from config.settings import MAX_RELAY_KEY_ID_BYTES, is_key_id, parse_relay_keys
from temporal.codec import local_key_file

FORMAT = 1
NONCE_BYTES = 12
TAG_BYTES = 16
#: Where env local/test keeps its generated key when ``SOSOHAPPY_RELAY_KEYS`` is unset.
LOCAL_KEY_FILE = "relay-keys"
#: Why a record could not be opened (``UnreadableRecord.reason``, the metric's ``reason`` label).
REASONS = ("malformed", "unknown_key", "not_authentic")


class UnreadableRecord(ValueError):
    """A record value that cannot be opened. ``reason``: ``malformed`` (not a sealed value at all),
    ``unknown_key`` (sealed under a key id this replica does not hold: ``key_id``), or ``not_authentic``
    (altered, forged, or moved to another record key or topic). Its message holds no content."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(reason if key_id is None else f"{reason} (key id {key_id!r})")
        self.reason, self.key_id = reason, key_id


class RecordSeal:
    """Seals with the first key of ``keys`` and opens under whichever key a value names; one AES-GCM
    object per key, made once."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("the relay keyring is empty")
        if any(len(key_id.encode()) > MAX_RELAY_KEY_ID_BYTES for key_id, _ in keys):
            raise ValueError(f"relay key ids are at most {MAX_RELAY_KEY_ID_BYTES} bytes")
        self._ciphers = {key_id.encode(): AESGCM(key) for key_id, key in keys}
        self.current_key_id = keys[0][0]
        current = self.current_key_id.encode()
        self._current = self._ciphers[current]
        self._head = bytes((FORMAT, len(current))) + current

    def seal(self, topic: str, key: bytes, value: bytes) -> bytes:
        """``value`` sealed under the current key, for the record ``key`` of ``topic``."""
        nonce = os.urandom(NONCE_BYTES)
        head = self._head
        return head + nonce + self._current.encrypt(nonce, value, _bound(head, topic, key))

    def open(self, topic: str, key: bytes | None, value: bytes | None) -> bytes:
        """The value a record of ``topic`` with ``key`` was sealed from; ``UnreadableRecord`` when it
        cannot be (never any other exception)."""
        if not value or value[0] != FORMAT or len(value) < 2:
            raise UnreadableRecord("malformed")
        end = 2 + value[1]
        if len(value) < end + NONCE_BYTES + TAG_BYTES:
            raise UnreadableRecord("malformed")
        key_id = value[2:end]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            # Logged as it is only when it looks like an id (it names, never holds, a key); a byte
            # outside ASCII decodes to U+FFFD, which no id has.
            shown = key_id.decode("ascii", errors="replace")
            raise UnreadableRecord("unknown_key", shown if is_key_id(shown) else None)
        nonce = value[end : end + NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, value[end + NONCE_BYTES :], _bound(value[:end], topic, key or b""))
        except (InvalidTag, ValueError):
            raise UnreadableRecord("not_authentic") from None


def _bound(head: bytes, topic: str, key: bytes) -> bytes:
    """The associated data: the value's head, then the topic (length-prefixed), then the record key."""
    name = topic.encode()
    return head + len(name).to_bytes(2, "big") + name + key


def relay_keys(settings: Settings) -> list[tuple[str, bytes]]:
    """The relay keyring of ``settings``: the configured keys, or (local/test only) the generated one,
    shared by every replica of one data folder."""
    if settings.relay_keys is not None:
        return parse_relay_keys(settings.relay_keys.get_secret_value())
    # The API refuses to start without them outside local/test (config.processes); kept so that no
    # path seals with nothing.
    if not settings.is_local:
        raise ValueError("SOSOHAPPY_RELAY_KEYS is required outside local/test")
    return parse_relay_keys(local_key_file(settings.data_dir, LOCAL_KEY_FILE).read_text().strip())


def relay_seal(settings: Settings) -> RecordSeal:
    """The seal of this replica's relayed records."""
    return RecordSeal(relay_keys(settings))
