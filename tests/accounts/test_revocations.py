"""The revocation view's listeners (what closes DM sockets) and its answers before it is caught up."""

from __future__ import annotations

import time

from accounts.revocations import RevocationView


def test_listeners_hear_every_revocation_applied_whether_or_not_the_view_is_ready() -> None:
    view = RevocationView(ttl_seconds=60)
    heard: list[tuple[str, str]] = []

    def broken(kind: str, subject: str) -> None:
        raise RuntimeError("a listener's bug")

    view.on_revocation(broken)
    view.on_revocation(lambda kind, subject: heard.append((kind, subject)))
    now = time.time()
    view.apply({"kind": "session", "id": "login-1", "at": now})
    view.apply({"kind": "user", "id": 7, "at": now})
    view.apply({"kind": "session", "id": "login-1", "at": now})  # a repeat (broker, then poll)
    view.apply({"kind": "session", "id": "old", "at": now - 120})  # every token it covered expired
    view.apply({"kind": "unknown", "id": "x", "at": now})
    assert heard == [("session", "login-1"), ("user", "7"), ("session", "login-1")]
    # Not ready: callers must ask the database, but what the view holds is already true.
    assert view.is_revoked("login-1", 1) is None
    assert view.knows_revoked("login-1", 1) and view.knows_revoked("login-2", 7)
    assert not view.knows_revoked("login-2", 1) and not view.knows_revoked("old", 1)
