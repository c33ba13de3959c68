"""Response bodies made of an image's stored chunks, read one at a time while the response is sent.

Each chunk is read over its own short pooled connection in the threadpool (never on the event loop,
never holding a connection while a slow client reads), and the next one only after the previous one
was handed to the server, whose writes wait for the socket to drain: a download holds about one chunk
(1 MiB) in memory, whatever the image's size and however slowly it is read.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.byte_ranges import ByteRange
from storage import feed_images
from storage.feed_images import IMAGE_CHUNK_BYTES, chunk_count

_JSON_HEAD, _JSON_TAIL = b'{"image":"', b'"}'


class ImageGone(RuntimeError):
    """A chunk disappeared while its image was being sent (the entry was deleted or replaced); the
    response is cut short, which the client sees as a failed download."""


def _chunk(engine: Engine, image_id: int, seq: int) -> bytes:
    with engine.connect() as conn:
        data = feed_images.read_chunk(conn, image_id, seq)
    if data is None:
        raise ImageGone(f"chunk {seq} of an image vanished while it was being sent")
    return data


async def image_bytes(engine: Engine, image_id: int, wanted: ByteRange) -> AsyncIterator[bytes]:
    """Bytes ``wanted.start``..``wanted.end`` of the image with internal id ``image_id``, one stored
    chunk (or the part of one the range covers) at a time."""
    first, last = wanted.start // IMAGE_CHUNK_BYTES, wanted.end // IMAGE_CHUNK_BYTES
    for seq in range(first, last + 1):
        data = await run_in_threadpool(_chunk, engine, image_id, seq)
        offset = seq * IMAGE_CHUNK_BYTES
        low = wanted.start - offset if seq == first else 0
        high = wanted.end - offset + 1 if seq == last else len(data)
        yield data if (low, high) == (0, len(data)) else data[low:high]


def base64_json_length(byte_size: int) -> int:
    """The length of ``{"image":"<standard base64 of byte_size bytes>"}``."""
    return len(_JSON_HEAD) + 4 * -(-byte_size // 3) + len(_JSON_TAIL)


async def base64_json(engine: Engine, image_id: int, byte_size: int) -> AsyncIterator[bytes]:
    """``{"image":"<standard base64>"}`` of the image, encoded chunk by chunk: each piece encodes a
    multiple of 3 bytes (the 0–2 bytes left over go in front of the next chunk), so the pieces join
    into exactly the base64 of the whole image."""
    yield _JSON_HEAD
    carry = b""
    for seq in range(chunk_count(byte_size)):
        data = await run_in_threadpool(_chunk, engine, image_id, seq)
        pending = carry + data if carry else data
        cut = len(pending) - len(pending) % 3
        yield base64.b64encode(memoryview(pending)[:cut])
        carry = pending[cut:]
    yield base64.b64encode(carry) + _JSON_TAIL
