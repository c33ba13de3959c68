"""Where DM receivers are connected: one row per (API replica, user) with an open socket count.

A replica writes its rows as sockets open and close and refreshes them on a heartbeat; a row older than
the freshness window belongs to a replica that died and no longer counts.
"""

from __future__ import annotations

from datetime import timedelta

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
