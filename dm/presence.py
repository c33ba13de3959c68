"""Where DM receivers are connected: one row per (API replica, user) with an open socket count.

A replica writes its rows as sockets open and close and refreshes them on a heartbeat; a row older than
the freshness window belongs to a replica that died and no longer counts.

Messages do not read the table: each replica keeps ``RemotePresence``, the other replicas' rows in
memory, told at once by their broadcasts (a socket opened or closed) and reloaded from the table on
every heartbeat, so a lost broadcast is wrong for at most one heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from storage.logins import utcnow
from storage.models import DmPresence


def set_sockets(conn: Connection, replica_id: str, user_id: int, sockets: int) -> None:
    """Record that ``user_id`` has ``sockets`` open on this replica (0 removes the row)."""
    conn.execute(delete(DmPresence).where(DmPresence.replica_id == replica_id, DmPresence.user_id == user_id))
    if sockets > 0:
        conn.execute(
            insert(DmPresence).values(
                replica_id=replica_id, user_id=user_id, sockets=sockets, seen_at=utcnow()
            )
        )


def heartbeat(conn: Connection, replica_id: str) -> None:
    """Keep this replica's rows fresh."""
    conn.execute(update(DmPresence).where(DmPresence.replica_id == replica_id).values(seen_at=utcnow()))


def forget_replica(conn: Connection, replica_id: str) -> None:
    """Drop every row of a replica that is shutting down."""
    conn.execute(delete(DmPresence).where(DmPresence.replica_id == replica_id))


def connected_elsewhere(conn: Connection, user_id: int, replica_id: str, fresh_seconds: float) -> bool:
    """True when another live replica holds a socket of ``user_id``."""
    since = utcnow() - timedelta(seconds=fresh_seconds)
    query = select(DmPresence.replica_id).where(
        DmPresence.user_id == user_id, DmPresence.replica_id != replica_id, DmPresence.seen_at >= since
    )
    return conn.execute(query.limit(1)).first() is not None


def others(conn: Connection, replica_id: str, fresh_seconds: float) -> list[tuple[int, str, datetime]]:
    """Every fresh row of the other replicas: ``(user id, replica id, seen at)``."""
    since = utcnow() - timedelta(seconds=fresh_seconds)
    query = select(DmPresence.user_id, DmPresence.replica_id, DmPresence.seen_at).where(
        DmPresence.replica_id != replica_id, DmPresence.seen_at >= since, DmPresence.sockets > 0
    )
    return [(int(u), str(r), s) for u, r, s in conn.execute(query)]


@dataclass
class RemotePresence:
    """This replica's view of which users have sockets on the other replicas: ``heard`` from their
    broadcasts as sockets open and close, ``load``-ed from ``dm_presence`` on every heartbeat (which
    corrects what a lost broadcast left wrong), and forgotten ``fresh_seconds`` after it was last
    confirmed (a replica that died)."""

    fresh_seconds: float
    _seen: dict[int, dict[str, datetime]] = field(default_factory=dict)
    #: Broadcasts heard since the last load began: replayed over the next load, which may have read
    #: the table before they were written.
    _recent: list[tuple[datetime, int, str, int]] = field(default_factory=list)

    def elsewhere(self, user_id: int) -> bool:
        """True when another live replica holds a socket of ``user_id``."""
        since = utcnow() - timedelta(seconds=self.fresh_seconds)
        return any(seen >= since for seen in self._seen.get(user_id, {}).values())

    def heard(self, replica_id: str, user_id: int, sockets: int) -> None:
        """Another replica says ``user_id`` now has ``sockets`` open there."""
        now = utcnow()
        self._recent.append((now, user_id, replica_id, sockets))
        self._apply(now, user_id, replica_id, sockets)

    def load(self, rows: list[tuple[int, str, datetime]], started: datetime) -> None:
        """Replace the view with the table's rows (``others``, read from ``started`` on), then replay
        the broadcasts heard since ``started``."""
        self._seen = {}
        for user_id, replica_id, seen_at in rows:
            self._seen.setdefault(user_id, {})[replica_id] = seen_at
        self._recent = [event for event in self._recent if event[0] >= started]
        for event in self._recent:
            self._apply(*event)

    def _apply(self, at: datetime, user_id: int, replica_id: str, sockets: int) -> None:
        replicas = self._seen.setdefault(user_id, {})
        if sockets > 0:
            replicas[replica_id] = at
        else:
            replicas.pop(replica_id, None)
        if not replicas:
            del self._seen[user_id]
