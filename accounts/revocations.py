"""The in-memory view of revoked logins and accounts that lets a replica authenticate without the database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Told ``(kind, subject)`` of each revocation applied: ``("session", login id)`` or ``("user", user id)``.
RevocationListener = Callable[[str, str], None]


class RevocationView:
    """Revoked login ids and account ids, each remembered until every token issued before it expired.

    It answers only while ``ready``: ``seeded`` (it has read the database's revocation records) and
    ``live`` (the broker feed is caught up and the records were read again after the broker connected).
    Otherwise callers ask the database, which is always the truth.
    """

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._sessions: dict[str, float] = {}
        self._users: dict[int, float] = {}
        self.seeded = False
        self.live = False
        self._listeners: list[RevocationListener] = []

    @property
    def ready(self) -> bool:
        """True when ``is_revoked`` may be trusted instead of the database."""
        return self.seeded and self.live

    @property
    def ttl_seconds(self) -> int:
        """How long a revocation is remembered (the access-token lifetime)."""
        return self._ttl

    def is_revoked(self, session_id: str, user_id: int) -> bool | None:
        """True/False once ready; ``None`` while the database must be asked instead."""
        if not self.ready:
            return None
        return session_id in self._sessions or user_id in self._users

    def knows_revoked(self, session_id: str, user_id: int) -> bool:
        """True if a revocation of this login or account was applied, ready or not: every entry came
        from the database or from the replica that wrote it there, so a yes is always true."""
        return session_id in self._sessions or user_id in self._users

    def on_revocation(self, listener: RevocationListener) -> None:
        """Call ``listener`` for every revocation applied from now on, whichever path applied it (this
        replica's request, the broker, a reconcile or a poll), repeats included; it runs inside
        ``apply`` on the caller's thread (the event loop), so it must be quick and idempotent."""
        self._listeners.append(listener)

    def apply(self, event: dict[str, object]) -> None:
        """Record one revocation event (``{"kind": "session"|"user", "id": ..., "at": epoch}``);
        applying one twice changes nothing."""
        until = float(event.get("at", time.time())) + self._ttl  # type: ignore[arg-type]
        if until < time.time():
            return
        kind = event.get("kind")
        if kind == "session":
            key = str(event["id"])
            self._sessions[key] = max(until, self._sessions.get(key, 0.0))
        elif kind == "user":
            uid = int(event["id"])  # type: ignore[call-overload]
            self._users[uid] = max(until, self._users.get(uid, 0.0))
            key = str(uid)
        else:
            return
        for listener in self._listeners:
            try:
                listener(kind, key)
            except Exception:  # a listener's bug must not stop the feed that applies revocations
                log.exception("revocation listener failed")

    def forget_expired(self) -> None:
        """Drop entries whose tokens have all expired anyway."""
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        self._users = {k: v for k, v in self._users.items() if v > now}
