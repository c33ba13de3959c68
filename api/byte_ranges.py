"""The ``Range`` and ``If-Range`` request headers of a single byte range (RFC 9110 §14).

Only one range is served; a header this reads as malformed, a range set of several ranges, or an
``If-Range`` that does not name the current representation means the whole representation (200), as
RFC 9110 §14.2 lets a server do. A well-formed single range that starts past the end (or a suffix of
zero bytes) is unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^(?P<first>[0-9]+)?-(?P<last>[0-9]+)?$")
#: Positions longer than this are larger than any stored image; they are read as "past the end" rather
#: than converted (Python refuses to convert a digit string of a few thousand digits).
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


class RangeNotSatisfiable(Exception):
    """The single range asked for starts at or past the end of the representation."""


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``end`` of a representation, both inclusive (``Content-Range`` numbering)."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of this range of ``size`` bytes."""
        return f"bytes {self.start}-{self.end}/{size}"


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range ``header`` asks for out of ``size`` bytes, clipped to them; ``None`` for the
    whole representation (no header, a malformed one, several ranges, another unit).
    ``RangeNotSatisfiable`` when the range lies wholly past the end."""
    if not header:
        return None
    unit, sep, ranges = header.strip().partition("=")
    if not sep or unit.lower() != "bytes":
        return None
    specs = [spec.strip(" \t") for spec in ranges.split(",")]  # OWS around the commas (and the ends)
    if len(specs) != 1:
        return None
    match = _SPEC.match(specs[0])
    if match is None or (match["first"] is None and match["last"] is None):
        return None
    if match["first"] is None:  # a suffix: the last N bytes
        suffix = _number(match["last"])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    first = _number(match["first"])
    last = size - 1 if match["last"] is None else _number(match["last"])
    if match["last"] is not None and last < first:
        return None  # invalid byte-range-spec: the header is ignored
    if first >= size:
        raise RangeNotSatisfiable
    return ByteRange(first, min(last, size - 1))


def if_range_allows(header: str | None, etag: str) -> bool:
    """Whether a ``Range`` may be served under this ``If-Range``: absent, or naming exactly this strong
    entity tag (a date, or a weak or other tag, means the client's copy may differ: send it whole)."""
    return header is None or header.strip() == f'"{etag}"'
