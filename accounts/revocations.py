"""The in-memory view of revoked logins and accounts that lets a replica authenticate without the database."""

from __future__ import annotations

import time


class RevocationView:
    """Revoked login ids and account ids, each remembered until the longest token lifetime has passed."""

    def __init__(self, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._sessions: dict[str, float] = {}
        self._users: dict[int, float] = {}
        self.ready = False

    def is_revoked(self, session_id: str, user_id: int) -> bool | None:
        """True/False once caught up; ``None`` while the database must be asked instead."""
        if not self.ready:
            return None
        return session_id in self._sessions or user_id in self._users

    def apply(self, event: dict[str, object]) -> None:
        """Record one revocation event (``{"kind": "session"|"user", "id": ..., "at": epoch}``)."""
        until = float(event.get("at", time.time())) + self._ttl  # type: ignore[arg-type]
        if until < time.time():
            return
        if event.get("kind") == "session":
            self._sessions[str(event["id"])] = until
        elif event.get("kind") == "user":
            self._users[int(event["id"])] = until  # type: ignore[call-overload]

    def forget_expired(self) -> None:
        """Drop entries whose tokens have all expired anyway."""
        now = time.time()
        self._sessions = {k: v for k, v in self._sessions.items() if v > now}
        self._users = {k: v for k, v in self._users.items() if v > now}
