"""Feed images: their metadata rows, their bytes in 1 MiB chunks, and the public ids that address them.

An image has two ids. ``id`` is internal: its chunks hang off it and it never leaves the server.
``public_id`` is the one listings show and ``GET /feed-service/image/{id}`` takes. That request carries
no token (the client's Kingfisher sends none), so the public id is a capability: random in
[2**62, 2**63) (a JSON integer the client decodes as a 64-bit ``Int``), shown only to those who may see
the entry, and replaced when the entry turns private, so an id seen while it was public stops working
at once. Bytes are written and read one chunk at a time: no caller ever needs a whole image in memory.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Connection, and_, insert, select, update

from storage.models import Feed, FeedImage, FeedImageChunk, User
from storage.users import not_resigning

IMAGE_CHUNK_BYTES = 1 << 20
_INTERNAL_ID_BITS = 52
PUBLIC_ID_MIN, PUBLIC_ID_END = 1 << 62, 1 << 63


def new_public_id() -> int:
    """A fresh random public image id in [2**62, 2**63): 62 random bits, never guessable."""
    return secrets.randbits(62) | PUBLIC_ID_MIN


def chunk_count(byte_size: int) -> int:
    """How many chunk rows an image of ``byte_size`` bytes has (at least one)."""
    return max(1, -(-byte_size // IMAGE_CHUNK_BYTES))


@dataclass(frozen=True)
class NewImage:
    """An uploaded image, already checked: its sniffed content type and its bytes, either in memory or
    as a seekable file (a spooled upload), which is read one chunk at a time from its start."""

    content_type: str
    source: bytes | BinaryIO


@dataclass(frozen=True)
class ImageMeta:
    """An image's metadata and the owner and visibility of the feed it belongs to."""

    id: int
    public_id: int
    content_type: str
    byte_size: int
    etag: str
    owner_id: int
    is_public: bool


def _read_full(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the file (a short read is retried)."""
    data = source.read(size)
    while data and len(data) < size:
        more = source.read(size - len(data))
        if not more:
            break
        data += more
    return data


def store_image(conn: Connection, feed_id: int, position: int, image: NewImage) -> int:
    """Insert the image and its chunks in the caller's transaction; its new public id.

    The source is read from its start one chunk at a time (so a transaction retried after a deadlock
    reads it again); the size and SHA-256 ``etag`` are computed on the way and written last.
    """
    image_id = secrets.randbits(_INTERNAL_ID_BITS) | 1 << (_INTERNAL_ID_BITS - 1)
    public_id = new_public_id()
    conn.execute(
        insert(FeedImage).values(
            id=image_id,
            public_id=public_id,
            feed_id=feed_id,
            position=position,
            content_type=image.content_type,
            byte_size=0,
            etag="",
        )
    )
    source = io.BytesIO(image.source) if isinstance(image.source, bytes) else image.source
    source.seek(0)
    digest, size, seq = hashlib.sha256(), 0, 0
    while True:
        chunk = _read_full(source, IMAGE_CHUNK_BYTES)
        if chunk or seq == 0:  # an empty image still has its one (empty) chunk
            conn.execute(insert(FeedImageChunk).values(image_id=image_id, seq=seq, data=chunk))
            digest.update(chunk)
            size, seq = size + len(chunk), seq + 1
        if len(chunk) < IMAGE_CHUNK_BYTES:
            break
    conn.execute(
        update(FeedImage).where(FeedImage.id == image_id).values(byte_size=size, etag=digest.hexdigest())
    )
    return public_id


def rotate_public_ids(conn: Connection, feed_id: int) -> int:
    """Give every image of the feed a new public id, in the caller's transaction (the entry turned
    private: ids seen while it was public must stop working); how many images there were."""
    ids = conn.execute(select(FeedImage.id).where(FeedImage.feed_id == feed_id)).scalars().all()
    for image_id in ids:
        conn.execute(update(FeedImage).where(FeedImage.id == image_id).values(public_id=new_public_id()))
    return len(ids)


def image_meta(conn: Connection, public_id: int) -> ImageMeta | None:
    """The metadata of the image with this public id, with its feed's owner and visibility (no bytes);
    ``None`` also when the owner asked to resign (their images are gone from that request on)."""
    row = conn.execute(
        select(
            FeedImage.id,
            FeedImage.public_id,
            FeedImage.content_type,
            FeedImage.byte_size,
            FeedImage.etag,
            Feed.user_id,
            Feed.is_public,
        )
        .join(Feed, Feed.id == FeedImage.feed_id)
        .join(User, and_(User.id == Feed.user_id, not_resigning()))
        .where(FeedImage.public_id == public_id)
    ).first()
    return ImageMeta(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6])) if row else None


def read_chunks(conn: Connection, image_id: int, first: int, last: int) -> Iterator[bytes]:
    """Chunks ``first``..``last`` of the image with internal id ``image_id``, in order, none when it is
    gone. One statement reads them all, so they come from one snapshot (InnoDB's consistent read, a
    SQLite read transaction): a delete or replace committed meanwhile never cuts them short. Rows are
    fetched one at a time (``yield_per``: MySQL's unbuffered cursor), never the whole image at once."""
    with conn.execution_options(yield_per=1).execute(
        select(FeedImageChunk.data)
        .where(FeedImageChunk.image_id == image_id, FeedImageChunk.seq.between(first, last))
        .order_by(FeedImageChunk.seq)
    ) as rows:
        for data in rows.scalars():
            yield bytes(data)
