"""Search recorded workflow histories for secrets: what a person with Web UI or CLI access could read.

``find_secrets`` looks at the raw bytes of every event (workflow ids, failure messages, search attribute
and memo payloads, inputs and results, all as the server stores them) and, for payloads whose metadata
says they are JSON or plain text, also at the decoded form (JSON string escapes such as ``\\uXXXX``
undone), so a needle is found however the data converter wrote it. It knows nothing about payload
codecs: payloads an encrypting codec wrote are ciphertext here, and nothing readable is found in them,
which is exactly the property to check.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

READABLE_ENCODINGS = (b"json/plain", b"binary/plain")


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every ``Payload`` anywhere inside ``message`` (inputs, results, failures' details, headers,
    search attributes, memos, markers)."""
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            entries = value.values() if field.message_type.fields_by_name["value"].message_type else []
            for entry in entries:
                yield from payloads_in(entry)
        elif isinstance(value, Message):
            yield from payloads_in(value)
        else:  # a repeated message field
            for item in value:
                yield from payloads_in(item)


def _decoded(payload: Payload) -> list[str]:
    """The readable forms of a JSON or plain payload (empty for anything else, e.g. ciphertext)."""
    if payload.metadata.get("encoding", b"") not in READABLE_ENCODINGS:
        return []
    text = payload.data.decode("utf-8", "replace")
    try:
        return [text, json.dumps(json.loads(text), ensure_ascii=False)]
    except ValueError:
        return [text]


def _forms(needle: str) -> list[bytes]:
    """How a needle could appear in raw bytes: UTF-8, and base64 of it (``bytes`` fields in JSON)."""
    raw = needle.encode()
    return [raw, base64.b64encode(raw).rstrip(b"=")]


def find_secrets(history_events: Iterable[HistoryEvent], needles: Iterable[str]) -> list[str]:
    """Where each needle occurs in the events: ``"<needle> in event <id> (<type>)"`` per finding (empty
    when none does). Needles shorter than 4 characters are refused: they would match by chance."""
    wanted = [n for n in needles if n]
    short = [n for n in wanted if len(n) < 4]
    if short:
        raise ValueError(f"needles too short to search for: {short}")
    found: list[str] = []
    for event in history_events:
        raw = event.SerializeToString()
        texts = [t for p in payloads_in(event) for t in _decoded(p)]
        for needle in wanted:
            if any(form in raw for form in _forms(needle)) or any(needle in t for t in texts):
                found.append(f"{needle!r} in event {event.event_id} ({EventType.Name(event.event_type)})")
    return found
