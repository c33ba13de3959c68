"""Limits of the DM sockets as pure logic: the close codes, the send queue of a slow receiver, the
refusal of a frame, and the sockets a user may keep across replicas (``SocketCap``).

The limits are settings (``config.settings``, README "Direct messages"); the admission of incoming
frames (size and rate, ``api.dm_limits.FrameGate``) lives with the API's rate limiter. Everything here
runs on an injected clock, so tests count frames instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

#: Close codes (RFC 6455 §7.4: 4000–4999 are the application's), as ``(code, reason)``.
TOO_BIG = (1009, "message too big")  # the standard code, also what uvicorn sends past ws_max_size
SLOW = (4408, "too slow: a frame could not be sent in time")
REPLACED = (4409, "too many sockets: replaced by a newer one")
FLOODING = (4429, "too many frames")

#: Frames waiting for a slow receiver's connection, in characters; beyond this the socket is closed as
#: SLOW without waiting for the send timeout (so memory per socket stays bounded however fast others send).
SEND_QUEUE_CHARS = 256 * 1024


@dataclass(frozen=True)
class Refusal:
    """Why a frame is not handled: ``reason`` for the sender, ``code`` for the refusal metric, and the
    close code when the socket is closed rather than answered."""

    reason: str
    code: str
    close: tuple[int, str] | None = None


@dataclass(frozen=True, order=True)
class SocketStamp:
    """When a socket opened, comparable across replicas (wall clock; ties by replica and number)."""

    opened_at: float
    replica: str
    seq: int

    def wire(self) -> list[Any]:
        """The JSON form in a broadcast."""
        return [self.opened_at, self.replica, self.seq]

    @classmethod
    def from_wire(cls, value: Any) -> SocketStamp:
        """The inverse of ``wire`` (``ValueError``/``TypeError`` for anything else)."""
        opened_at, replica, seq = value
        return cls(float(opened_at), str(replica), int(seq))


S = TypeVar("S")


class SocketCap:
    """Which of a user's sockets on this replica to close so that the user keeps at most ``limit``: the
    newest win, counting those other replicas announced (``heard``) in the last ``remember_seconds``.

    Every replica closes only its own sockets and ranks by the same stamps, so none of the user's newest
    ``limit`` sockets is ever closed because of a socket elsewhere that is still announced; an
    announcement that was lost only lets the user keep more sockets until the next one.
    """

    def __init__(self, limit: int, remember_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self._remember = remember_seconds
        self._clock = clock
        self._heard: dict[int, dict[str, tuple[float, list[SocketStamp]]]] = {}

    def heard(self, user_id: int, replica: str, stamps: Iterable[SocketStamp]) -> None:
        """Replica ``replica`` says these are all of ``user_id``'s sockets there now."""
        listed = sorted(stamps)
        replicas = self._heard.setdefault(user_id, {})
        if listed:
            replicas[replica] = (self._clock(), listed)
        else:
            replicas.pop(replica, None)

    def knows(self, user_id: int) -> bool:
        """Whether another replica has announced sockets of ``user_id`` (so it wants to hear of ours)."""
        return bool(self._heard.get(user_id))

    def forget(self, user_id: int) -> None:
        """Drop what other replicas said about ``user_id`` (this replica has no socket of theirs left,
        or is starting a fresh round of announcements)."""
        self._heard.pop(user_id, None)

    def over_limit(self, user_id: int, local: Mapping[SocketStamp, S]) -> list[S]:
        """The sockets of ``local`` (stamp → socket of this replica) to close, oldest first."""
        now = self._clock()
        remote = self._heard.get(user_id, {})
        for replica in [r for r, (at, _) in remote.items() if now - at > self._remember]:
            del remote[replica]
        every = sorted([*local, *(s for _, stamps in remote.values() for s in stamps)], reverse=True)
        return [local[s] for s in reversed(every[self.limit :]) if s in local]
