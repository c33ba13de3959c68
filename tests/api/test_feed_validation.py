"""Bad input gets a 400 (or 413) naming the field, never a 500, and the stored entry is left as it was."""

from __future__ import annotations

import socket

import httpx
import pytest

from activities.deps import ActivityDeps
from feeds.entries import MAX_IMAGE_BYTES
from tests.api.feed_helpers import PNG, day_feed, feed_count, kst, member, month_feed, unique_year
from tests.fixtures.ios_client import IOSClient, multipart

SAVE_FIELDS = {
    "text": "t",
    "categoryList": "coffee",
    "isPublic": "true",
    "weather": "sunny",
    "happiness": "3",
}


@pytest.fixture
def me(http: httpx.Client) -> IOSClient:
    return member(http)


def _save(app: IOSClient, when: int, changes: dict[str, str | None] | None = None) -> httpx.Response:
    fields = {**SAVE_FIELDS, "date": str(when), "nickname": app.nickname, **(changes or {})}
    return app.post_multipart("/feed-service/saveFeed", [(k, v) for k, v in fields.items() if v is not None])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date": None}, "date"),
        ({"date": "202401201704271"}, "date"),  # 15 digits
        ({"date": "2024132017042712"}, "date"),  # month 13
        ({"date": "2023022917042712"}, "date"),  # no 29 February in 2023
        ({"date": "tomorrow"}, "date"),
        ({"happiness": None}, "happiness"),
        ({"happiness": "0"}, "happiness"),
        ({"happiness": "6"}, "happiness"),
        ({"happiness": "four"}, "happiness"),
        ({"happiness": "3.0"}, "happiness"),  # a whole number in decimal digits only, as the app sends
        ({"happiness": "3_"}, "happiness"),
        ({"date": "2024012017042712.0"}, "date"),
        ({"date": "2024_0120_1704_2712"}, "date"),
        ({"weather": None}, "weather"),
        ({"weather": "windy"}, "weather"),
        ({"categoryList": None}, "categoryList"),
        ({"categoryList": "coffee,karaoke"}, "categoryList"),
        ({"categoryList": "coffee,beer,books,cook"}, "categoryList"),
        ({"isPublic": None}, "isPublic"),
        ({"isPublic": "maybe"}, "isPublic"),
        ({"text": "가" * 3001}, "text"),
        ({"nickname": None}, "nickname"),
        ({"imageList[0]": "image.png"}, "imageList"),  # an image part without a file: not "no images"
    ],
)
def test_a_malformed_save_is_400_naming_the_field_and_keeps_the_old_entry(
    me: IOSClient, activity_deps: ActivityDeps, changes: dict[str, str | None], field: str
) -> None:
    date = kst(2024, 1, 20)
    assert _save(me, date).status_code == 200
    resp = _save(me, date, {"text": "replaced", **changes})
    assert resp.status_code == 400, resp.text
    assert field in resp.json()["message"]
    assert day_feed(me, me.nickname, date).json()["text"] == "t"
    assert feed_count(activity_deps, me.nickname) == 1


def test_a_text_part_that_is_not_utf8_is_400_and_keeps_the_old_entry(me: IOSClient) -> None:
    """The app sends UTF-8; other bytes are refused, not stored as their Latin-1 reading (mojibake)."""
    date = kst(2024, 1, 21)
    assert _save(me, date).status_code == 200
    marker = "NOT-UTF-8"
    body, content_type = multipart(
        [
            (k, v)
            for k, v in {**SAVE_FIELDS, "date": str(date), "nickname": me.nickname, "text": marker}.items()
        ]
    )
    resp = me.http.post(
        "/feed-service/saveFeed",
        content=body.replace(marker.encode(), "수다".encode("euc-kr")),
        headers={"Content-Type": content_type, "Authorization": me.access, "email": me.email},
    )
    assert resp.status_code == 400 and "text" in resp.json()["message"], resp.text
    assert day_feed(me, me.nickname, date).json()["text"] == "t"


def test_image_count_size_and_type_limits(me: IOSClient) -> None:
    year = unique_year()
    too_many = me.save_feed(kst(year, 1, 1), images=[PNG] * 6)
    assert too_many.status_code == 400 and "at most 5" in too_many.json()["message"]
    not_an_image = me.save_feed(kst(year, 1, 1), images=[b"GIF89a" + bytes(20)])
    assert not_an_image.status_code == 400 and "imageList[0]" in not_an_image.json()["message"]
    too_big = me.save_feed(kst(year, 1, 1), images=[PNG + bytes(MAX_IMAGE_BYTES)])
    assert too_big.status_code == 413 and "imageList[0]" in too_big.json()["message"]
    assert month_feed(me, me.nickname, kst(year, 1, 1)).json() == []


def test_a_body_over_the_request_limit_is_413_before_it_is_read(me: IOSClient, api_url: str) -> None:
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            "POST /feed-service/saveFeed HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {me.access}\r\nemail: {me.email}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {65 * 1024 * 1024}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"--b\r\n")  # the rest never comes: the limit is checked first
        assert sock.recv(4096).startswith(b"HTTP/1.1 413 ")


def test_an_empty_category_list_is_allowed_and_lists_as_empty(me: IOSClient) -> None:
    date = kst(unique_year(), 2, 2)
    assert _save(me, date, {"categoryList": ""}).status_code == 200
    assert day_feed(me, me.nickname, date).json()["categoryList"] == []


def test_indexed_categories_are_a_list_as_spring_bound_them(me: IOSClient) -> None:
    date = kst(unique_year(), 2, 4)
    indexed = {"categoryList": None, "categoryList[1]": "coffee", "categoryList[0]": "music"}
    assert _save(me, date, indexed).status_code == 200
    assert day_feed(me, me.nickname, date).json()["categoryList"] == ["music", "coffee"]


def test_duplicate_categories_are_stored_once_in_order(me: IOSClient) -> None:
    date = kst(unique_year(), 2, 3)
    assert _save(me, date, {"categoryList": "music, coffee,music"}).status_code == 200
    assert day_feed(me, me.nickname, date).json()["categoryList"] == ["music", "coffee"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page": -1}, "page"),
        ({"page": "x"}, "page"),
        ({"page": 10**20}, "page"),
        ({"size": 0}, "size"),
        ({"size": 36}, "size"),
        ({"size": "21.0"}, "size"),
        ({"page": "0_1"}, "page"),
        ({"date": "2024"}, "date"),
        ({"date": "2024012017042712.0"}, "date"),
        ({"nickname": None}, "nickname"),
    ],
)
def test_bad_listing_parameters_are_400(me: IOSClient, params: dict, field: str) -> None:
    query = {"nickname": me.nickname, "page": 0, "size": 21, **params}
    resp = me.get_query("/feed-service/findOtherFeed", {k: v for k, v in query.items() if v is not None})
    assert resp.status_code == 400 and field in resp.json()["message"]


@pytest.mark.parametrize(
    "path",
    [
        "findDayFeed",
        "findMonthFeed",
        "analysisHappiness",
        "findMonthHappiness",
        "findYearHappiness",
        "deleteFeed",
        "updatePublicStatus",
    ],
)
def test_missing_or_malformed_dates_are_400_on_every_nickname_and_date_endpoint(
    me: IOSClient, path: str
) -> None:
    for fields in ([("nickname", me.nickname)], [("nickname", me.nickname), ("date", "99")], [("date", "x")]):
        resp = me.post_multipart(f"/feed-service/{path}", fields)
        assert resp.status_code == 400, (path, fields, resp.text)


def test_malformed_like_detail_and_image_requests_are_400(me: IOSClient) -> None:
    assert me.post_multipart("/feed-service/updateLike", [("nickname", "x")]).status_code == 400
    assert me.post_query("/feed-service/findDetailFeed", {"dstNickname": "x"}).status_code == 400
    for bad in ("abc", "0", str(2**64), "1.0", "1_0"):
        resp = me.post_multipart("/feed-service/findFeedImage", [("imageId", bad)])
        assert resp.status_code == 400 and "imageId" in resp.json()["message"], bad
        resp = me.http.get(f"/feed-service/image/{bad}")
        assert resp.status_code == 400 and "imageId" in resp.json()["message"], bad
    broken = me.http.post(
        "/feed-service/saveFeed",
        content=b"--b\r\nContent-Disposition: form-data; name=",
        headers={
            "Authorization": me.access,
            "email": me.email,
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    assert broken.status_code == 400


def test_a_flood_of_unknown_categories_is_a_short_400(me: IOSClient, activity_deps: ActivityDeps) -> None:
    date = kst(unique_year(), 2, 5)
    flood = ",".join(f"made-up-{i}-" + "x" * 200 for i in range(2000))  # ~420 KB of made-up names
    resp = _save(me, date, {"categoryList": flood})
    assert resp.status_code == 400
    message = resp.json()["message"]
    assert "made-up-0-" in message and "and 1995 more" in message and "made-up-5-" not in message
    assert len(resp.content) < 2048
    assert feed_count(activity_deps, me.nickname) == 0


def test_a_json_date_that_is_not_a_whole_number_is_400_and_changes_nothing(me: IOSClient) -> None:
    """A JSON number with a fraction or an exponent is not the app's date (past 2**53 a float cannot
    even hold every 16-digit date): refused, not rounded into some entry's day."""
    date = kst(unique_year(), 8, 8)
    assert _save(me, date).status_code == 200
    headers = {"Authorization": me.access, "email": me.email, "Content-Type": "application/json"}
    for raw in (f"{date}.0", f"{date / 1e15}e15"):
        body = f'{{"date": {raw}, "nickname": "{me.nickname}", "isPublic": false}}'
        resp = me.http.post("/feed-service/updatePublicStatus", content=body.encode(), headers=headers)
        assert resp.status_code == 400 and "date" in resp.json()["message"], (raw, resp.text)
    assert day_feed(me, me.nickname, date).json()["isPublic"] is True
