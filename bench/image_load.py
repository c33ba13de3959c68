"""The load of ``bench.images``: downloading and uploading clients on raw asyncio streams, a sampler of a
process's resident memory, and the bare static-file endpoint the downloads are compared with.

The clients never hold a whole image: a download is read and dropped 1 MiB at a time, and an upload
writes the one shared image bytes in 1 MiB slices, so the benchmark's own memory stays small and the
machine's CPU goes to the servers being measured.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    _uvloop = None  # type: ignore[assignment]

SLICE = 1 << 20
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed."""
    return _uvloop.run(coro) if _uvloop is not None else asyncio.run(coro)


# --- memory of the process under test ------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


class RssSampler:
    """Samples ``VmRSS`` of ``pid`` every ``interval`` seconds in a thread while a ``with`` block runs."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(status_kib(self.pid, "VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(status_kib(self.pid, "VmRSS"))

    @property
    def peak_mib(self) -> float:
        """The largest sample, MiB."""
        return max(self.samples) / 1024

    @property
    def median_mib(self) -> float:
        """The median sample, MiB."""
        ordered = sorted(self.samples)
        return ordered[len(ordered) // 2] / 1024


# --- downloads -----------------------------------------------------------------------------------


@dataclass
class Downloads:
    """What the download clients received within the measured window."""

    window: float
    bytes: int = 0
    responses: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def mib_per_second(self) -> float:
        """Body bytes received in the window per second, MiB/s."""
        return self.bytes / self.window / 2**20


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int]:
    """``(status, Content-Length)`` of the next response."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    length = 0
    for line in lines:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split(b" ", 2)[1]), length


async def _download(port: int, path: str, expected: int, start: float, end: float, result: Downloads) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=SLICE)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    try:
        while time.perf_counter() < end:
            writer.write(request)
            status, left = await _read_head(reader)
            if status != 200 or left != expected:
                result.errors.append(f"{status}, Content-Length {left}")
            while left:
                data = await reader.read(min(left, SLICE))
                if not data:
                    raise ConnectionError("the server closed the connection mid-body")
                left -= len(data)
                now = time.perf_counter()
                if now > end:
                    return
                if now >= start:
                    result.bytes += len(data)
            if time.perf_counter() >= start:
                result.responses += 1
    finally:
        writer.close()


def download(port: int, path: str, expected: int, clients: int, warmup: float, seconds: float) -> Downloads:
    """``clients`` keep-alive connections fetching ``path`` again and again: ``warmup`` seconds unmeasured,
    then ``seconds`` in which every received body byte counts."""

    async def main() -> Downloads:
        t0 = time.perf_counter()
        result = Downloads(window=seconds)
        start, end = t0 + warmup, t0 + warmup + seconds
        await asyncio.gather(*(_download(port, path, expected, start, end, result) for _ in range(clients)))
        return result

    return run(main())


# --- uploads -------------------------------------------------------------------------------------


@dataclass
class Uploads:
    """How the uploads went."""

    seconds: float = 0.0
    answered: dict[int, int] = field(default_factory=dict)  # status -> count
    body_bytes: int = 0
    samples: list[str] = field(default_factory=list)


class MultipartSaves:
    """saveFeed bodies as the app sends them (image parts first, then the fields), sharing one image
    bytes object: only the fields after the images differ per request."""

    def __init__(self, image: bytes, images_per_entry: int) -> None:
        self.boundary = f"alamofire.boundary.{uuid.uuid4().hex[:16]}"
        self.pieces: list[bytes] = []
        for i in range(images_per_entry):
            self.pieces += [
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="imageList[{i}]"; '
                'filename="image.png"\r\nContent-Type: image/png\r\n\r\n'.encode(),
                image,
                b"\r\n",
            ]

    def fields(self, values: Sequence[tuple[str, str]]) -> bytes:
        """The text parts and the closing boundary."""
        parts = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in values
        )
        return parts + f"--{self.boundary}--\r\n".encode()


async def _upload(
    port: int, saves: MultipartSaves, entries: Sequence[tuple[dict[str, str], bytes]], result: Uploads
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for headers, tail in entries:
            length = sum(len(p) for p in saves.pieces) + len(tail)
            lines = ["POST /feed-service/saveFeed HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
            lines += [f"Content-Type: multipart/form-data; boundary={saves.boundary}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            for piece in saves.pieces:
                view = memoryview(piece)
                for offset in range(0, len(view), SLICE):
                    writer.write(view[offset : offset + SLICE])
                    await writer.drain()
            writer.write(tail)
            await writer.drain()
            status, size = await _read_head(reader)
            body = await reader.readexactly(size)
            result.answered[status] = result.answered.get(status, 0) + 1
            result.body_bytes += length
            if status != 200 and len(result.samples) < 5:
                result.samples.append(f"{status} {body[:200]!r}")
    finally:
        writer.close()


def upload(
    port: int, saves: MultipartSaves, per_client: Sequence[Sequence[tuple[dict[str, str], bytes]]]
) -> Uploads:
    """Each client sends its entries one after the other, all clients at once."""

    async def main() -> Uploads:
        result = Uploads()
        t0 = time.perf_counter()
        await asyncio.gather(*(_upload(port, saves, entries, result) for entries in per_client))
        result.seconds = time.perf_counter() - t0
        return result

    return run(main())


# --- the bare static-file endpoint (``python -m bench.images --serve-static FILE --port N``) ------


def serve_static(path: Path, port: int) -> None:
    """Serve ``path`` at ``GET /file`` with Starlette's ``FileResponse`` under the API's uvicorn options."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse
    from starlette.routing import Route

    from api.serve import uvicorn_options
    from config import Settings

    async def file(_: Request) -> FileResponse:
        return FileResponse(path, media_type="image/png")

    app = Starlette(routes=[Route("/file", file)])
    options = {**uvicorn_options(Settings(env="test", api_port=port)), "lifespan": "off"}
    uvicorn.Server(uvicorn.Config(app, **options)).run()
