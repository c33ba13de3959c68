"""The chart tab's three calls through the API, against values worked out by hand."""

from __future__ import annotations

import httpx

from feeds.happiness import sentences
from tests.api.feed_helpers import kst, member
from tests.fixtures.ios_client import IOSClient


def _chart(app: IOSClient, path: str, date: int) -> httpx.Response:
    resp = app.post_multipart(f"/feed-service/{path}", [("nickname", app.nickname), ("date", str(date))])
    assert resp.status_code == 200, resp.text
    return resp


def test_charts_and_analysis_of_one_users_entries(http: httpx.Client) -> None:
    me = member(http)
    # Private entries count too: the charts are the owner's own.
    me.save_feed(kst(2024, 1, 5), happiness=5, categories="beer")
    me.save_feed(kst(2024, 1, 31), happiness=2, categories="beer", is_public=False)
    me.save_feed(kst(2024, 2, 3), happiness=5, categories="coffee,friends")
    me.save_feed(kst(2024, 2, 10), happiness=3, categories="coffee,movie")
    me.save_feed(kst(2024, 2, 29), happiness=1, categories="movie,trip")
    me.save_feed(kst(2024, 3, 15), happiness=4, categories="music")

    month = _chart(me, "findMonthHappiness", kst(2024, 2, 14)).json()
    expected = [0.0] * 29
    expected[3 - 1], expected[10 - 1], expected[29 - 1] = 5.0, 3.0, 1.0
    assert month == [{"happiness": v, "formattedDate": str(d)} for d, v in enumerate(expected, start=1)]
    assert len(_chart(me, "findMonthHappiness", kst(2023, 2, 1)).json()) == 28

    year = _chart(me, "findYearHappiness", kst(2024, 7, 1)).json()
    # Jan (5 + 2) / 2, Feb (5 + 3 + 1) / 3, Mar 4.
    assert [p["happiness"] for p in year] == [3.5, 3.0, 4.0] + [0.0] * 9
    assert [p["formattedDate"] for p in year][:3] == ["Jan", "Feb", "Mar"]

    # February points: coffee 5 + 3 = 8, friends 5, movie 3 + 1 = 4, trip 1.
    result = _chart(me, "analysisHappiness", kst(2024, 2, 20)).json()
    assert result["bestCategoryList"] == ["coffee", "friends", "movie"]
    # Only movie has sentences (and its line is the first of category.txt, hidden by the old BOM bug):
    # rank 3 of 3 contributes (3 - 2) * 3 = 3 sentences.
    recs = result["recommendCategoryList"]
    assert len(recs) == 3 and len(set(recs)) == 3 and set(recs) <= set(sentences()["movie"])

    empty = _chart(me, "analysisHappiness", kst(2024, 6, 1)).json()
    assert empty == {"bestCategoryList": [], "recommendCategoryList": ["피드 작성하기"]}
