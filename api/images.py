"""Uploaded images: what kind they are (from their bytes, never from the client's declared type) and how
big, read off the spooled upload without loading it.

Starlette spools every file part past 1 MiB to a temporary file while it parses the form; the routes
check an upload's size and first bytes here and hand the store the file itself, which writes it one
chunk at a time (``storage.feed_images.store_image``), so no request holds a whole image in memory.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
# ISO-BMFF brands of HEIF/HEIC stills and sequences as iPhones write them.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
#: Bytes the signatures need.
SNIFF_BYTES = 12


def sniff_image_type(data: bytes) -> str | None:
    """``image/jpeg``, ``image/png`` or ``image/heic`` when the bytes are one of those, else ``None``."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic"
    return None


async def upload_size(upload: UploadFile) -> int:
    """The upload's size in bytes: counted by the form parser as it spooled the part (measured on
    the file, in the threadpool, for an upload built otherwise)."""
    if upload.size is not None:
        return upload.size

    def measure() -> int:
        return upload.file.seek(0, 2)

    return await run_in_threadpool(measure)


async def sniffed_upload_type(upload: UploadFile) -> str | None:
    """``sniff_image_type`` of the upload's first bytes; the file is left at its start."""
    await upload.seek(0)
    head = await upload.read(SNIFF_BYTES)
    await upload.seek(0)
    return sniff_image_type(head)
