"""Response bodies of an image's stored chunks: copied from one consistent read, sent at the client's pace.

A download copies the chunks it sends, in a thread of its own and at the database's speed, into a
spool (``api.image_spools``), and the response sends from the spool as fast as the client reads: the
entry being deleted or its images replaced, or its author resigning, meanwhile never cuts it short, and
no transaction waits on a slow client. Memory holds about one chunk (1 MiB) for the copy and one for
the response, whatever the image's size; the first bytes leave as soon as the first chunk is copied.
An image gone before that is a 404 before any body. The spools of one process share a budget of disk
(``SOSOHAPPY_DOWNLOAD_SPOOL_BYTES``, the pod's ``/tmp`` that uploads spool to as well): a download
that would go past it is refused with 503 and ``Retry-After`` before its body.
"""

from __future__ import annotations

import base64
import weakref
from collections.abc import AsyncIterator

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.byte_ranges import ByteRange
from api.errors import ServerBusy
from api.image_spools import Spool, SpoolBudget
from storage.feed_images import IMAGE_CHUNK_BYTES

_JSON_HEAD, _JSON_TAIL = b'{"image":"', b'"}'


async def image_bytes(
    engine: Engine, budget: SpoolBudget, image_id: int, wanted: ByteRange
) -> AsyncIterator[bytes] | None:
    """Bytes ``wanted.start``..``wanted.end`` of the image with internal id ``image_id``, once their
    first chunk is spooled; ``None`` when the image is gone. Raises ``ServerBusy`` when the spool
    budget has no room for the chunks the range covers."""
    first, last = wanted.start // IMAGE_CHUNK_BYTES, max(wanted.start, wanted.end) // IMAGE_CHUNK_BYTES
    spool = Spool.begin(engine, budget, image_id, first, last)
    if spool is None:
        raise ServerBusy("this server is sending as many images as it can hold, try again")
    try:
        found = await run_in_threadpool(spool.started)
    except BaseException:
        spool.done()
        raise
    if not found:
        spool.done()
        return None
    body = _sent(spool, wanted.start - first * IMAGE_CHUNK_BYTES, wanted.length)
    weakref.finalize(body, spool.done)  # a response dropped before it began sending
    return body


async def _sent(spool: Spool, offset: int, length: int) -> AsyncIterator[bytes]:
    try:
        end = offset + length
        while offset < end:
            piece = await run_in_threadpool(spool.read, offset, min(IMAGE_CHUNK_BYTES, end - offset))
            offset += len(piece)
            yield piece
    finally:
        spool.done()


def base64_json_length(byte_size: int) -> int:
    """The length of ``{"image":"<standard base64 of byte_size bytes>"}``."""
    return len(_JSON_HEAD) + 4 * -(-byte_size // 3) + len(_JSON_TAIL)


async def base64_json(
    engine: Engine, budget: SpoolBudget, image_id: int, byte_size: int
) -> AsyncIterator[bytes] | None:
    """``{"image":"<standard base64>"}`` of the image (``None`` when it is gone), encoded piece by
    piece: each piece encodes a multiple of 3 bytes (the 0–2 bytes left over go in front of the next),
    so the pieces join into exactly the base64 of the whole image."""
    raw = await image_bytes(engine, budget, image_id, ByteRange(0, byte_size - 1))
    return None if raw is None else _encoded(raw)


async def _encoded(raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield _JSON_HEAD
    carry = b""
    async for data in raw:
        pending = carry + data if carry else data
        cut = len(pending) - len(pending) % 3
        yield base64.b64encode(memoryview(pending)[:cut])
        carry = pending[cut:]
    yield base64.b64encode(carry) + _JSON_TAIL
