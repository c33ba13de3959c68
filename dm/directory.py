"""This replica's hints of who holds which nickname, so accepting a message needs no lookup.

A hint is never trusted on its own: the one statement that records a message (``dm.rooms.record_checked``)
also checks, as it runs, that both users hold the nicknames the hints gave and that the receiver has not
blocked the sender. A hint made stale by a rename, a resign or a block (on any replica, broadcast or not)
therefore costs one failed statement and one lookup, which corrects it; it can never store or deliver a
message under the wrong user.
"""

from __future__ import annotations

#: Hints kept before they are all dropped (a bound on memory; they are refilled by the next lookups).
MAX_HINTS = 100_000


class Directory:
    """``user id <-> nickname`` as this replica last saw it."""

    def __init__(self, max_hints: int = MAX_HINTS) -> None:
        self._nickname: dict[int, str] = {}
        self._id: dict[str, int] = {}
        self._max = max_hints

    def nickname(self, user_id: int) -> str | None:
        """The nickname ``user_id`` last held here (a hint)."""
        return self._nickname.get(user_id)

    def user_id(self, nickname: str) -> int | None:
        """The user who last held ``nickname`` here (a hint)."""
        return self._id.get(nickname)

    def learn(self, user_id: int, nickname: str) -> None:
        """``user_id`` holds ``nickname`` now (read from the database); drops the hints it contradicts."""
        old = self._nickname.get(user_id)
        if old is not None and old != nickname and self._id.get(old) == user_id:
            del self._id[old]
        holder = self._id.get(nickname)
        if holder is not None and holder != user_id and self._nickname.get(holder) == nickname:
            del self._nickname[holder]
        if len(self._nickname) >= self._max and user_id not in self._nickname:
            self._nickname.clear()
            self._id.clear()
        self._nickname[user_id], self._id[nickname] = nickname, user_id

    def forget(self, user_id: int) -> None:
        """Drop the hints of ``user_id`` (its nickname is gone or no longer trusted)."""
        old = self._nickname.pop(user_id, None)
        if old is not None and self._id.get(old) == user_id:
            del self._id[old]
