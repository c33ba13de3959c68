"""The nudges' pure rules (``temporal.nudges``): the KST day and month a scheduled time addresses, quiet
hours across midnight, when a period is still due, how long a nudge's push may retry; and the story's
figures by the charts' rules (``feeds.happiness.month_story``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from config import Settings
from feeds.entries import CATEGORIES
from feeds.happiness import CATEGORY_NAMES, Entry, MonthStory, month_story
from kst.dates import KST
from temporal import nudges
from temporal.nudges import MONTHLY, REMINDER

PLAN = nudges.plan_of(Settings(env="test"), REMINDER)  # quiet 23:00-08:00, story window 7 days


def test_the_kst_day_and_month_of_a_scheduled_time() -> None:
    # 21:00 KST is 12:00 UTC of the same day; 08:30 KST on the 1st is 23:30 UTC of the month's last day.
    assert nudges.kst_day(datetime(2026, 12, 31, 12, 0, tzinfo=UTC)) == 20261231
    assert nudges.kst_day(datetime(2026, 12, 31, 15, 0, tzinfo=UTC)) == 20270101
    assert nudges.story_month(datetime(2026, 12, 31, 23, 30, tzinfo=UTC)) == 202612
    assert nudges.story_month(datetime(2027, 3, 1, 0, 0, tzinfo=KST)) == 202702
    assert nudges.period_of(REMINDER, datetime(2027, 1, 1, 0, 0, tzinfo=KST)) == 20270101
    assert nudges.period_of(MONTHLY, datetime(2027, 1, 1, 0, 0, tzinfo=KST)) == 202612


def test_quiet_hours_span_midnight_and_equal_times_mean_none() -> None:
    at = datetime(2026, 12, 24, tzinfo=KST)
    assert nudges.quiet_remaining(at.replace(hour=22, minute=59), PLAN) is None
    assert nudges.quiet_remaining(at.replace(hour=23), PLAN) == timedelta(hours=9)
    assert nudges.quiet_remaining(at.replace(hour=7, minute=30), PLAN) == timedelta(minutes=30)
    assert nudges.quiet_remaining(at.replace(hour=8), PLAN) is None
    daytime = PLAN.model_copy(update={"quiet_start_minute": 12 * 60, "quiet_end_minute": 13 * 60})
    assert nudges.quiet_remaining(at.replace(hour=12, minute=15), daytime) == timedelta(minutes=45)
    assert nudges.quiet_remaining(at.replace(hour=23), daytime) is None
    none = nudges.plan_of(Settings(env="test", nudge_quiet_start=time(0), nudge_quiet_end=time(0)), REMINDER)
    assert nudges.quiet_remaining(at.replace(hour=3), none) is None


def test_a_reminder_is_due_on_its_day_and_a_story_in_the_first_days_after_its_month() -> None:
    assert nudges.still_due(REMINDER, 20261231, datetime(2026, 12, 31, 23, 59, tzinfo=KST), PLAN)
    assert not nudges.still_due(REMINDER, 20261231, datetime(2027, 1, 1, 0, 0, tzinfo=KST), PLAN)
    assert nudges.still_due(MONTHLY, 202612, datetime(2027, 1, 7, 23, 0, tzinfo=KST), PLAN)
    assert not nudges.still_due(MONTHLY, 202612, datetime(2027, 1, 8, 0, 0, tzinfo=KST), PLAN)
    assert not nudges.still_due(MONTHLY, 202611, datetime(2027, 1, 1, 9, 0, tzinfo=KST), PLAN)


def test_a_nudge_push_gives_up_at_the_quiet_start_or_the_end_of_its_day() -> None:
    evening = datetime(2026, 12, 24, 21, 0, tzinfo=KST)
    assert nudges.push_deadline_seconds(REMINDER, evening, PLAN) == 2 * 3600
    none = PLAN.model_copy(update={"quiet_start_minute": 0, "quiet_end_minute": 0})
    assert nudges.push_deadline_seconds(REMINDER, evening, none) == 3 * 3600  # midnight
    assert nudges.push_deadline_seconds(MONTHLY, evening.replace(hour=9), none) == 12 * 3600  # at most
    assert nudges.push_deadline_seconds(REMINDER, evening.replace(hour=22, minute=59, second=59), PLAN) == 60


def test_the_story_uses_the_charts_rules() -> None:
    entries = [
        Entry(2026113020000000, 5, ("coffee", "books")),
        Entry(2026110120000000, 4, ("coffee",)),
        Entry(2026111520000000, 1, ("books", "sleep")),
    ]
    story = month_story(2026110100000000, entries)
    assert (story.days, round(story.mean_happiness, 4), story.best_category) == (3, 3.3333, "coffee")
    assert month_story(2026110100000000, []) == MonthStory(days=0, mean_happiness=0.0, best_category=None)
    assert set(CATEGORY_NAMES) == CATEGORIES
