"""A minimal HTTP/1.1 keep-alive load generator on raw asyncio streams (uvloop when available).

httpx spends more CPU per request than a small server does on two cores, so it cannot saturate one;
this client writes prebuilt request bytes and reads responses framed by ``Content-Length``, nothing
else. ``run`` keeps ``concurrency`` connections busy for a warm-up and then a measured window and
reports the rate, every latency of the window and the non-200 answers.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    _uvloop = None  # type: ignore[assignment]


def get(
    path: str, params: dict[str, str | int] | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """A complete ``GET`` request."""
    target = f"{path}?{urlencode(params)}" if params else path
    return _request("GET", target, headers or {}, b"")


def post_multipart(path: str, fields: dict[str, str | int], headers: dict[str, str] | None = None) -> bytes:
    """A complete ``POST`` request with a ``multipart/form-data`` body of text fields."""
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        + f"--{boundary}--\r\n".encode()
    )
    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return _request("POST", path, {**content_type, **(headers or {})}, body)


def _request(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    """What one ``run`` measured: the latencies of the measured window's 200s, also by request tag."""

    window: float
    latencies: list[float] = field(default_factory=list)
    tagged: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    completed: int = 0  # every answer, warm-up included

    @property
    def rate(self) -> float:
        """Answers per second (200 or not) completed within the measured window."""
        return (len(self.latencies) + self.errors) / self.window if self.window else 0.0

    def pct(self, q: float, tag: str | None = None) -> float:
        """The q-quantile of the window's latencies (of requests tagged ``tag``), in milliseconds."""
        ordered = sorted(self.latencies if tag is None else self.tagged.get(tag, []))
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, read one response: ``(status, body)``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length, close = None, False
        for line in header_lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported")
        body = await self.reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _run(
    host: str,
    port: int,
    requests: Sequence[tuple[str, bytes]],
    concurrency: int,
    warmup: float,
    duration: float,
) -> Result:
    t0 = time.perf_counter()
    start, end = t0 + warmup, t0 + warmup + duration
    result = Result(window=duration)
    queue = itertools.cycle(requests)

    async def client() -> None:
        conn = _Connection(host, port)
        try:
            while (now := time.perf_counter()) < end:
                tag, request = next(queue)
                status, body = await conn.exchange(request)
                done = time.perf_counter()
                result.completed += 1
                if not start <= done <= end:
                    continue
                if status == 200:
                    result.latencies.append(done - now)
                    result.tagged.setdefault(tag, []).append(done - now)
                else:
                    result.errors += 1
                    if len(result.samples) < 5:
                        result.samples.append(f"{status} {body[:200]!r}")
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return result


def run(
    port: int,
    requests: Sequence[tuple[str, bytes]],
    *,
    concurrency: int = 32,
    warmup: float = 1.5,
    duration: float = 8.0,
    host: str = "127.0.0.1",
) -> Result:
    """Cycle through ``requests`` (``(tag, bytes)``) on ``concurrency`` keep-alive connections: ``warmup``
    seconds unmeasured, then ``duration`` seconds in which every answer counts."""
    coro = _run(host, port, requests, concurrency, warmup, duration)
    if _uvloop is not None:
        return _uvloop.run(coro)
    return asyncio.run(coro)
