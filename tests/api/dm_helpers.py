"""Waits of the DM tests on two API replicas: until a message sent to a socket on the other replica
goes there, not to a push; and a DM socket on a replica."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from urllib.parse import quote

import jwt
from sqlalchemy import select
from websockets.sync.client import ClientConnection, connect

from activities.deps import ActivityDeps
from storage.logins import utcnow
from storage.models import DmPresence
from tests.fixtures.ios_client import IOSClient

#: The replicas' presence heartbeat in these tests (``SOSOHAPPY_DM_HEARTBEAT_SECONDS``), so the wait for
#: two beats below is short; the freshness window stays the default's.
HEARTBEAT_SECONDS = 1.0


def _user_id(app: IOSClient) -> int:
    return int(jwt.decode(app.access.removeprefix("Bearer "), options={"verify_signature": False})["uid"])


def wait_until_seen(
    deps: ActivityDeps, *apps: IOSClient, timeout: float = 60, since: datetime | None = None
) -> None:
    """Wait (conditions, generous deadline) until every replica has recorded the sockets just opened in
    ``dm_presence`` (an app given twice has two), and then until each replica holding one of them has
    beaten twice since: a replica's view of the others (``dm.presence.RemotePresence``) comes from their
    broadcasts, and when one is late, from the table at its next beat. Its first beat after the rows were
    all written reads them; its second starts after that read was applied. With ``since``, only rows
    stamped from then on count (a killed replica's rows, which no longer beat, are left out)."""
    expected = Counter(_user_id(app) for app in apps)
    deadline = time.monotonic() + timeout

    def rows() -> list[tuple[int, int, str, datetime]]:
        with deps.engine.connect() as conn:
            query = select(DmPresence.user_id, DmPresence.sockets, DmPresence.replica_id, DmPresence.seen_at)
            query = query.where(DmPresence.user_id.in_(expected))
            if since is not None:
                query = query.where(DmPresence.seen_at >= since)
            return [tuple(r) for r in conn.execute(query)]  # type: ignore[misc]

    def sockets(found: list[tuple[int, int, str, datetime]]) -> Counter[int]:
        counted: Counter[int] = Counter()
        for user_id, n, _, _ in found:
            counted[user_id] += n
        return counted

    while sockets(rows()) != expected:
        _before(deadline, "the sockets recorded in dm_presence")
    # Every row is written by now; a beat stamped from the next whole second on started after this.
    written = (utcnow() + timedelta(seconds=1)).replace(microsecond=0)
    beats: dict[str, set[datetime]] = {}
    while True:
        found = rows()
        for _, _, replica, seen_at in found:
            beats.setdefault(replica, set())
            if seen_at >= written:
                beats[replica].add(seen_at)
        if beats and all(len(stamps) >= 2 for stamps in beats.values()):
            return
        _before(deadline, "two presence heartbeats of every replica holding these sockets")


def _before(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise AssertionError(f"not reached: {what}")
    time.sleep(0.1)


def dm_socket(app: IOSClient, base: str, open_timeout: float) -> ClientConnection:
    """``app``'s DM socket on the replica at ``base`` (``http://host:port``)."""
    headers = {"Authorization": app.access, "email": app.email}
    return connect(
        f"ws://{base.removeprefix('http://')}/dm-service/connect-dm?nickname={quote(app.nickname)}",
        additional_headers=headers,
        open_timeout=open_timeout,
    )
