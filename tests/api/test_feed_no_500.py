"""No input makes a feed endpoint answer 5xx: every field of every endpoint gets junk of every kind."""

from __future__ import annotations

import random
from urllib.parse import quote

import httpx

from tests.api.feed_helpers import PNG, kst, member

JUNK = [
    "",
    " ",
    "-1",
    "0",
    "2.5",
    "1e309",
    "9" * 40,
    "-" + "9" * 30,
    "true",
    "null",
    "[]",
    "{}",
    "\x00",
    "가" * 200,
    "🩷" * 50,
    "'; DROP TABLE feeds; --",
    "%00%ff",
    "2024022917042712",
    "9999123123595999",
]
POST_FIELDS = {
    "saveFeed": ["text", "categoryList", "isPublic", "date", "weather", "happiness", "nickname"],
    "findDayFeed": ["nickname", "date"],
    "findMonthFeed": ["nickname", "date"],
    "updateLike": ["nickname", "date", "srcNickname"],
    "updatePublicStatus": ["nickname", "date", "isPublic"],
    "deleteFeed": ["nickname", "date"],
    "findFeedImage": ["imageId"],
    "analysisHappiness": ["nickname", "date"],
    "findMonthHappiness": ["nickname", "date"],
    "findYearHappiness": ["nickname", "date"],
}
GET_FIELDS = {
    "findOtherFeed": ["nickname", "page", "size", "date"],
    "findUserFeed": ["srcNickname", "dstNickname", "page", "size"],
}


def test_junk_in_every_field_is_answered_below_500(http: httpx.Client) -> None:
    me = member(http)
    me.save_feed(kst(2024, 1, 20), images=[PNG])
    rng = random.Random(20261125)
    valid = {"nickname": me.nickname, "srcNickname": me.nickname, "dstNickname": me.nickname}
    valid |= {"date": str(kst(2024, 1, 20)), "page": "0", "size": "21", "imageId": "1", "isPublic": "true"}
    valid |= {"text": "t", "categoryList": "coffee", "weather": "sunny", "happiness": "3"}
    statuses: list[int] = []
    for path, fields in {**POST_FIELDS, **GET_FIELDS}.items():
        for field in fields:
            for junk in rng.sample(JUNK, 8):
                values = {f: valid[f] for f in fields} | {field: junk}
                if path in GET_FIELDS:
                    resp = me.get_query(f"/feed-service/{path}", dict(values))
                else:
                    resp = me.post_multipart(f"/feed-service/{path}", list(values.items()))
                assert resp.status_code < 500, (path, field, junk, resp.text)
                statuses.append(resp.status_code)
    for raw in [*JUNK, "%2F..%2F", "1/2"]:
        assert http.get(f"/feed-service/image/{quote(raw, safe='/%')}").status_code < 500, raw
    assert 400 in statuses and 200 in statuses  # both kinds of answer were exercised
