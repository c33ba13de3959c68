"""Nickname propagation: stores that keep nicknames by value (the Mongo messages) follow a rename."""

from __future__ import annotations

from temporalio import activity

from activities.deps import ActivityDeps
from storage import nickname_changes
from temporal.accounts import NicknameChange

#: ``rename_in_messages``'s answer for a numbered rename that was already applied (or whose account is
#: gone): nothing was touched.
ALREADY_APPLIED = -1


class NicknameActivities:
    """Activities of ``NicknameChangeWorkflow``."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="rename_in_messages")
    def rename_in_messages(self, change: NicknameChange) -> int:
        """Rename the user in every direct message and room id; returns rooms touched, or
        ``ALREADY_APPLIED`` for a numbered rename applied before (a re-delivered start).

        Idempotent: a retry after the messages were rewritten but before the number was recorded
        rewrites nothing more (no message carries the old name any longer).
        """
        if change.change_id is not None:
            with self._deps.sessions() as session:
                if not nickname_changes.is_pending(session, change.user_id, change.change_id):
                    return ALREADY_APPLIED
        rooms = self._deps.messages.rename_participant(change.old, change.new)
        if change.change_id is not None:
            with self._deps.sessions.begin() as session:
                nickname_changes.mark_applied(session, change.user_id, change.change_id)
        return rooms
