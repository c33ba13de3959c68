"""What kind of image an upload is, from its bytes (never from the client's declared type)."""

from __future__ import annotations

_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))
# ISO-BMFF brands of HEIF/HEIC stills and sequences as iPhones write them.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}


def sniff_image_type(data: bytes) -> str | None:
    """``image/jpeg``, ``image/png`` or ``image/heic`` when the bytes are one of those, else ``None``."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "image/heic"
    return None
