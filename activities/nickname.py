"""Renames queued before messages were keyed by user id: what is left for ``NicknameChangeWorkflow``.

Messages name their users by id and responses show current nicknames, so a rename today needs nothing
outside the users row and setProfile starts no workflow. Runs started (or queued in the outbox) before
that still arrive; for them the activity pins the *legacy* messages (stored by nickname, not converted
yet) under the old nickname to the renamed user's id, so the conversion cannot give them to whoever holds
that nickname now, and runs the conversion (``dm.migrate_messages``) once no such rename is pending.
Converted messages are never touched.
"""

from __future__ import annotations

from temporalio import activity

from activities.deps import ActivityDeps
from dm.migrate_messages import convert_legacy_messages, log_report
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
        """Pin the legacy messages under the old nickname to the user; returns how many sides were
        pinned, or ``ALREADY_APPLIED`` for a numbered rename applied before (a re-delivered start).
        When no numbered rename is pending any more, the legacy messages are converted to ids.

        Idempotent: a retry after the messages were pinned but before the number was recorded pins
        nothing more (pinned sides are left alone). The number is recorded before the conversion (which
        waits for no rename to be pending), so a rename found applied still runs the conversion: a retry
        whose attempt before failed in it converts then (it goes on where that one stopped; with nothing
        legacy left it is one query). The pinning and each converted batch heartbeat.
        """
        if change.change_id is not None:
            with self._deps.sessions() as session:
                pending = nickname_changes.is_pending(session, change.user_id, change.change_id)
            if not pending:
                self._convert()
                return ALREADY_APPLIED
        pinned = self._deps.messages.claim_legacy(change.old, change.user_id)
        activity.heartbeat()
        if change.change_id is not None:
            with self._deps.sessions.begin() as session:
                nickname_changes.mark_applied(session, change.user_id, change.change_id)
        self._convert()
        return pinned

    def _convert(self) -> None:
        """Convert the legacy messages unless a rename is still pending; log what was done."""
        report = convert_legacy_messages(
            self._deps.engine, self._deps.messages, after_batch=activity.heartbeat
        )
        if report.converted or report.unresolved:
            log_report(report)
