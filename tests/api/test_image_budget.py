"""saveFeed counts the image bytes it stores against the caller's daily budget
(``SOSOHAPPY_IMAGE_BYTES_PER_USER_PER_DAY``, small here): saves up to it are taken, replacing an entry's
images counts again, and the save that would go over is answered 429 with ``Retry-After`` and the reason,
counted in ``sosohappy_feed_image_budget_refusals_total``, leaving the entry as it was; a save without
images is still taken. Parallel saves of one user (the count is in the database, under the user's row
lock) store only what fits."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client import REGISTRY

from activities.deps import ActivityDeps
from api.main import create_app
from config import Settings
from tests.api.feed_helpers import PNG, day_feed, feed_count, kst, member, unique_year
from tests.fixtures.asgi import serve_in_thread
from tests.fixtures.ios_client import IOSClient

#: Room for four images a day.
BUDGET = 4 * len(PNG)


@pytest.fixture(scope="module")
def replica(settings: Settings, api_url: str) -> Iterator[httpx.Client]:
    """An API process whose users may store ``BUDGET`` bytes of images a day."""
    app = create_app(settings.model_copy(update={"image_bytes_per_user_per_day": BUDGET}))
    with serve_in_thread(app, http="h11") as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def _refusals() -> float:
    return REGISTRY.get_sample_value("sosohappy_feed_image_budget_refusals_total") or 0.0


def _on(replica: httpx.Client, http: httpx.Client) -> IOSClient:
    me = member(http)
    me.http = replica
    return me


def test_saves_up_to_the_budget_are_taken_and_the_next_is_429_with_the_entry_unchanged(
    replica: httpx.Client, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    me, year = _on(replica, http), unique_year()
    first, second = kst(year, 1, 1), kst(year, 1, 2)
    assert me.save_feed(first, images=[PNG, PNG]).status_code == 200
    assert me.save_feed(second, images=[PNG], text="before").status_code == 200
    assert me.save_feed(second, images=[PNG], text="before").status_code == 200  # replaced: counted again
    before = day_feed(me, me.nickname, second).json()
    refusals = _refusals()

    refused = me.save_feed(second, images=[PNG], text="after")
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 24 * 3600
    assert f"over the daily image budget of {BUDGET} bytes" in refused.json()["message"]
    assert _refusals() == refusals + 1
    assert day_feed(me, me.nickname, second).json() == before

    # Deleting an entry gives nothing back: its images were stored.
    assert me.post_multipart(
        "/feed-service/deleteFeed", [("nickname", me.nickname), ("date", str(first))]
    ).is_success
    assert me.save_feed(kst(year, 1, 3), images=[PNG]).status_code == 429
    assert me.save_feed(second, text="no pictures today").status_code == 200
    assert day_feed(me, me.nickname, second).json()["imageIdList"] == []
    assert feed_count(activity_deps, me.nickname) == 1


def test_parallel_saves_of_one_user_store_only_what_fits(
    replica: httpx.Client, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """Six saves at once, of six days with two images each, under a budget of four images."""
    me, year = _on(replica, http), unique_year()
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda day: me.save_feed(kst(year, 2, day), images=[PNG, PNG]), range(1, 7)))
    assert sorted(answer.status_code for answer in answers) == [200, 200, 429, 429, 429, 429]
    assert feed_count(activity_deps, me.nickname) == 2


def test_a_save_refused_after_its_count_takes_the_count_back(
    replica: httpx.Client, http: httpx.Client, activity_deps: ActivityDeps
) -> None:
    """The budget is counted in a transaction of its own before the entry's: a save refused after it (here
    for naming someone else) leaves the whole budget free."""
    me, year = _on(replica, http), unique_year()
    refused = me.save_feed(kst(year, 3, 1), images=[PNG] * 4, nickname=f"{me.nickname}x")
    assert refused.status_code == 400, refused.text
    assert me.save_feed(kst(year, 3, 2), images=[PNG] * 4).status_code == 200
    assert feed_count(activity_deps, me.nickname) == 1
