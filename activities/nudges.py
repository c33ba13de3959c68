"""Nudge activities (``DailyReminderWorkflow``, ``MonthlyStoryWorkflow``): the worker's settings for a
run, and the ids of the users one batch is for (``storage.nudges``). Read-only, so idempotent: a retry
lists the page again, as it is then."""

from __future__ import annotations

from temporalio import activity

from activities.deps import ActivityDeps
from storage import nudges
from storage.logins import utcnow
from temporal.nudges import REMINDER, NudgePlan, Recipients, RecipientsPage, plan_of


class NudgeActivities:
    """Activities of the nudge workflows over the worker's database and settings."""

    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="nudge_plan")
    def plan(self, kind: str) -> NudgePlan:
        """Whether ``kind`` is switched on, its batch size and the quiet hours, from the worker's settings."""
        return plan_of(self._deps.settings, kind)

    @activity.defn(name="nudge_recipients")
    def recipients(self, page: RecipientsPage) -> Recipients:
        """Up to ``page.limit`` ids of users due for the nudge, ascending, after ``page.after_user_id``."""
        lister = nudges.reminder_recipients if page.kind == REMINDER else nudges.story_recipients
        with self._deps.sessions() as session:
            ids = lister(session, page.period, utcnow(), page.after_user_id, page.limit, page.last_user_id)
        return Recipients(user_ids=ids, done=len(ids) < page.limit)
