"""Nickname propagation: stores that keep nicknames by value (the Mongo messages) follow a rename."""

from __future__ import annotations

from temporalio import activity

from activities.deps import ActivityDeps
from temporal.accounts import NicknameChange


class NicknameActivities:
    """Activities of ``NicknameChangeWorkflow``."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="rename_in_messages")
    def rename_in_messages(self, change: NicknameChange) -> int:
        """Rename the user in every direct message and room id (idempotent); returns rooms touched."""
        return self._deps.messages.rename_participant(change.old, change.new)
