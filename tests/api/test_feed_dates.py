"""saveFeed with the production rule on dates (``SOSOHAPPY_FEED_FUTURE_DAYS``, 1): an entry dated more than
a day after today (KST) is refused with 400 and changes nothing, so nobody can pin a public entry to the
top of findOtherFeed's newest-first listing; today, tomorrow and any past day are taken (the app dates a
new entry now and an edited one with its own date). The suite's other tests run without the limit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from kst.dates import from_moment, now_kst, to_moment
from tests.api.feed_helpers import feed_count, member
from tests.fixtures.asgi import serve_in_thread

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def replica(settings: Settings, api_url: str) -> Iterator[httpx.Client]:
    """An API process with the production default of ``feed_future_days``."""
    default = Settings.model_fields["feed_future_days"].default
    assert default == 1
    app = create_app(settings.model_copy(update={"feed_future_days": default}))
    with serve_in_thread(app, http="h11") as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def _days_from_now(days: int) -> int:
    """The start of the KST day ``days`` from today (tomorrow's start stays within the rule even if KST
    midnight falls between here and the server)."""
    today = to_moment(now_kst()).replace(hour=0, minute=0, second=0, microsecond=0)
    return from_moment(today + timedelta(days=days))


def test_an_entry_dated_past_tomorrow_is_refused_and_today_tomorrow_and_the_past_are_taken(
    replica: httpx.Client, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me = member(http)
    me.http = replica
    # Three days ahead, not two: still past tomorrow if KST midnight falls between here and the server.
    for far in (_days_from_now(3), _days_from_now(400), 9999123123595999):
        resp = me.save_feed(far, text="pinned", is_public=True)
        assert resp.status_code == 400, (far, resp.text)
        assert "after today" in resp.json()["message"]
    assert feed_count(activity_deps, me.nickname) == 0
    for date in (now_kst(), _days_from_now(1), _days_from_now(-30), 2001010112000000):
        assert me.save_feed(date, text="ok").status_code == 200, date
    assert feed_count(activity_deps, me.nickname) == 4
