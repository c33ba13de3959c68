"""DM sockets follow their login: a socket closes when the login it was opened with ends.

A replica's revocation view (``api.revocations``) hears every revocation, whichever path brings it: this
replica's own sign-out, refresh-reuse or resign request, the broker's broadcast from another replica, the
reconcile when the broker reconnects, or the periodic poll of the ``revocations`` table. Each one closes
this replica's sockets of that login (``session`` record) or of that user (``user`` record) with
``CLOSE_REVOKED``. A socket also closes with ``CLOSE_EXPIRED`` when the access token it was opened with
expires. Before each frame is stored the socket's login is checked again (in memory; the database only
while the view is not caught up), so nothing a revoked login sends after its revocation reached this
replica is stored or delivered.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import Counter

from api.resources import Resources
from api.security import login_revoked

if TYPE_CHECKING:
    from dm.sockets import Socket

#: The login was revoked (sign-out, refresh-token reuse, resign, account deleted): sign in again.
CLOSE_REVOKED = 4401
#: The access token expired: re-issue it and reconnect (as REST's 403 makes the app re-issue).
CLOSE_EXPIRED = 4403
REASONS = {CLOSE_REVOKED: "login revoked", CLOSE_EXPIRED: "token expired"}
_LABELS = {CLOSE_REVOKED: "revoked", CLOSE_EXPIRED: "expired"}
ENDED = Counter(
    "sosohappy_dm_sockets_ended_total", "DM sockets the server closed because their login ended", ["reason"]
)  # revoked | expired


class LoginSockets:
    """This replica's DM sockets by login and by user, closed when their login ends."""

    def __init__(self, res: Resources) -> None:
        self._res = res
        self._by_login: dict[str, set[Socket]] = {}
        self._by_user: dict[int, set[Socket]] = {}
        self._expiry: dict[Socket, asyncio.TimerHandle] = {}
        res.revocations.on_revocation(self._revoked)

    def bind(self, user_id: int, sock: Socket) -> None:
        """Follow a newly accepted socket's login; close it at once if that login was revoked while
        the socket was being opened, and at its token's expiry otherwise."""
        login = sock.login
        if login is None:
            return
        self._by_login.setdefault(login.session_id, set()).add(sock)
        self._by_user.setdefault(user_id, set()).add(sock)
        if self._res.revocations.knows_revoked(login.session_id, user_id):
            self.end(sock, CLOSE_REVOKED)
        elif login.expires_at:
            delay = max(0.0, login.expires_at - time.time())
            self._expiry[sock] = asyncio.get_running_loop().call_later(delay, self.end, sock, CLOSE_EXPIRED)

    def unbind(self, user_id: int, sock: Socket) -> None:
        """Stop following a closed socket."""
        if (timer := self._expiry.pop(sock, None)) is not None:
            timer.cancel()
        if sock.login is not None:
            _discard(self._by_login, sock.login.session_id, sock)
        _discard(self._by_user, user_id, sock)

    def end(self, sock: Socket, code: int) -> None:
        """Drop the socket's frames from now on and close it with ``code`` (once)."""
        if sock.close_code is not None:
            return
        ENDED.labels(_LABELS[code]).inc()
        sock.close(code, REASONS[code])  # its reader stops at once; the close frame follows queued frames

    async def admits(self, sock: Socket) -> bool:
        """Whether a frame just received on ``sock`` may be handled: False (and the socket ends) once
        its login is revoked or its token expired. Raises when the database had to answer and could not."""
        login = sock.login
        if sock.close_code is None and login is not None:
            if login.expires_at and time.time() >= login.expires_at:
                self.end(sock, CLOSE_EXPIRED)
            elif await login_revoked(self._res, login):
                self.end(sock, CLOSE_REVOKED)
        return sock.close_code is None

    def _revoked(self, kind: str, subject: str) -> None:
        if kind == "session":
            targets = self._by_login.get(subject, ())
        else:
            targets = self._by_user.get(int(subject), ())
        for sock in list(targets):
            self.end(sock, CLOSE_REVOKED)


K = TypeVar("K")


def _discard(index: dict[K, set[Socket]], key: K, sock: Socket) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(sock)
        if not group:
            del index[key]
