"""Spools: an image's chunks, copied from one consistent read into an unnamed temporary file, for one
response to send at its client's pace (``api.image_streams``).

A copier thread reads the chunks with one statement (``storage.feed_images.read_chunks``: one
snapshot, so the entry being deleted or its images replaced, or its author resigning, meanwhile never
cuts them short) at the database's speed; the statement and its pooled connection last as long as the
copy, never as long as a slow client. The response reads each piece once the copy has reached it. The
spools of one process share a budget of disk (``SOSOHAPPY_DOWNLOAD_SPOOL_BYTES``).
"""

from __future__ import annotations

import os
import tempfile
import threading

from sqlalchemy import Engine

from storage import feed_images
from storage.feed_images import IMAGE_CHUNK_BYTES


class SpoolBudget:
    """Bytes of spool this process's downloads may hold at once, and how many they hold."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._lock = threading.Lock()  # given back from copier threads too

    def take(self, size: int) -> bool:
        """Count ``size`` bytes in, unless that would go past the limit."""
        with self._lock:
            if self.in_use + size > self.limit:
                return False
            self.in_use += size
            return True

    def give_back(self, size: int) -> None:
        """Count ``size`` bytes out."""
        with self._lock:
            self.in_use -= size


class Spool:
    """One download's copy of the chunks it sends, written by its copier thread and read by its
    response; the file and its share of the budget go once both are done with it."""

    def __init__(self, budget: SpoolBudget, size: int) -> None:
        self._file = tempfile.TemporaryFile(buffering=0)
        self._budget, self._size = budget, size
        self._changed = threading.Condition()
        self._chunks = self._written = 0
        self._copying, self._sending = True, True
        self._failure: BaseException | None = None

    @classmethod
    def begin(cls, engine: Engine, budget: SpoolBudget, image_id: int, first: int, last: int) -> Spool | None:
        """A spool of chunks ``first``..``last`` of the image, its copier thread started; ``None`` when
        the budget has no room for them (a whole chunk each)."""
        size = (last - first + 1) * IMAGE_CHUNK_BYTES
        if not budget.take(size):
            return None
        try:
            spool = cls(budget, size)
        except BaseException:
            budget.give_back(size)
            raise
        threading.Thread(
            target=spool._copy, args=(engine, image_id, first, last), name="image-spool", daemon=True
        ).start()
        return spool

    def _copy(self, engine: Engine, image_id: int, first: int, last: int) -> None:
        """Copy chunks ``first``..``last`` of the image (the copier thread; it stops early once the
        response is gone)."""
        try:
            with engine.connect() as conn:
                for data in feed_images.read_chunks(conn, image_id, first, last):
                    if not self._append(data):
                        break
        except BaseException as exc:  # the response raises it when it needs bytes never copied
            self._failure = exc
        finally:
            self._stop(copier=True)

    def _append(self, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            view = view[self._file.write(view) :]
        with self._changed:
            self._chunks, self._written = self._chunks + 1, self._written + len(data)
            self._changed.notify_all()
            return self._sending

    def started(self) -> bool:
        """Wait for the first chunk: ``False`` when there was none (the image is gone)."""
        with self._changed:
            self._changed.wait_for(lambda: self._chunks > 0 or not self._copying)
            if self._chunks == 0 and self._failure is not None:
                raise self._failure
            return self._chunks > 0

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, once the copy has reached it."""
        with self._changed:
            self._changed.wait_for(lambda: self._written > offset or not self._copying)
            available = self._written - offset
        if available <= 0:
            raise self._failure or RuntimeError("an image's chunks ended before its size")
        return os.pread(self._file.fileno(), min(size, available), offset)

    def done(self) -> None:
        """The response is done with the spool (sent, or its client gone); safe to repeat."""
        self._stop(copier=False)

    def _stop(self, *, copier: bool) -> None:
        with self._changed:
            if copier:
                self._copying = False
            else:
                self._sending = False
            self._changed.notify_all()
            if self._copying or self._sending or self._file.closed:
                return
            self._file.close()
        self._budget.give_back(self._size)
