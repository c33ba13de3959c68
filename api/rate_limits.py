"""Per-client-IP rate limits of the sign-in endpoints, inside one API process.

The ingress limits the same paths cluster-wide (``k8s/base/ingress.yaml``); this limiter is the
backstop for whatever reaches a replica another way (and for ``make run``). The client IP is the one
uvicorn's proxy-header handling puts in the ASGI scope: ``X-Forwarded-For`` of a trusted peer
(``SOSOHAPPY_API_FORWARDED_ALLOW_IPS``), else the socket's peer.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

from api.errors import TooManyRequests

#: Buckets kept at most; the least recently used is dropped first (it has refilled the longest).
MAX_TRACKED_CLIENTS = 100_000


class RateLimiter:
    """Token buckets per key: ``burst`` requests at once, refilled at ``per_minute`` a minute.

    ``clock`` (seconds, monotonic) is injected so tests count requests instead of sleeping.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("per_minute and burst must be positive")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one request for ``key``: ``0`` if allowed, else the seconds until one is."""
        with self._lock:
            now = self._clock()
            tokens, at = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self._rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait


def sign_in_limiter_from(
    per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
) -> RateLimiter | None:
    """The limiter of the sign-in endpoints for these settings (``None`` when ``per_minute`` is 0)."""
    return RateLimiter(per_minute, burst, clock) if per_minute > 0 else None


def client_key(host: str) -> str:
    """Whose bucket a request from ``host`` fills: the address itself for IPv4, its /64 for IPv6 (one
    subscriber's network: a host picks any of its 2^64 addresses at will, so a bucket per address would
    give it a fresh burst each time)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def limit_sign_in(request: Request) -> None:
    """FastAPI dependency: 429 with ``Retry-After`` when the caller's IP is over the sign-in limit.

    Marked ``before_body``: ``api.params.ClientRoute`` runs it before the body is read, so a refused
    request costs no parsing; FastAPI's own call afterwards counts nothing twice. Each endpoint has its
    own bucket per IP (a sign-in is one ``getAuthorizeCode`` and one ``signIn``).
    """
    limiter: RateLimiter | None = request.app.state.sign_in_limiter
    if limiter is None or getattr(request.state, "sign_in_limit_checked", False):
        return
    request.state.sign_in_limit_checked = True
    client = client_key(request.client.host) if request.client else "unknown"
    wait = limiter.acquire(f"{request.url.path} {client}")
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"too many sign-in requests from this address; retry in {seconds} s", retry_after=seconds
        )


limit_sign_in.before_body = True  # type: ignore[attr-defined]
