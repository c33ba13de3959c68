"""Each /feed-service endpoint called exactly as the iOS client calls it (CLIENT_CONTRACT §3.9–3.21),
answered with the exact shapes it decodes."""

from __future__ import annotations

import base64
import time

import httpx

from emulators.control import FcmEmulator
from tests.api.feed_helpers import (
    HEIC,
    JPEG,
    PNG,
    day_feed,
    detail_feed,
    kst,
    like,
    member,
    month_feed,
    unique_year,
)


def test_save_feed_then_the_owner_views_it(http: httpx.Client) -> None:
    me, year = member(http), unique_year()
    date = kst(year, 1, 20)
    resp = me.save_feed(date, images=[PNG, JPEG])
    assert resp.status_code == 200
    assert resp.json() == {"success": True, "message": "등록 성공"}
    assert me.save_feed(kst(year, 1, 3), happiness=2, categories="sleep", is_public=False).status_code == 200

    # The calendar preview asks for the day at local midnight and gets the entry of that day.
    day = day_feed(me, me.nickname, kst(year, 1, 20, 0, 0, 0, 0))
    assert day.status_code == 200 and day.headers["content-type"] == "application/json"
    body = day.json()
    image_ids = body["imageIdList"]
    assert body == {
        "nickname": me.nickname,
        "weather": "partlyCloudy",
        "date": date,
        "happiness": 4,
        "text": "친구랑 카페에서 수다",
        "isPublic": True,
        "categoryList": ["coffee", "friends"],
        "imageIdList": image_ids,
        "likeNicknameList": [],
    }
    # Public ids: random capabilities in [2**62, 2**63), still integers the client decodes as Int (64-bit).
    assert len(image_ids) == 2 and all(type(i) is int and 2**62 <= i < 2**63 for i in image_ids)

    month = month_feed(me, me.nickname, kst(year, 1, 1, 0, 0, 0, 0))
    assert month.status_code == 200
    assert [(f["date"], f["isPublic"]) for f in month.json()] == [(date, True), (kst(year, 1, 3), False)]
    assert month.json()[1]["imageIdList"] == [] and month.json()[1]["categoryList"] == ["sleep"]
    assert month_feed(me, me.nickname, kst(year, 2, 1)).json() == []


def test_saving_the_same_day_again_replaces_the_entry_and_keeps_likes(http: httpx.Client) -> None:
    me, fan, year = member(http), member(http), unique_year()
    assert me.save_feed(kst(year, 3, 1, 9), images=[PNG, PNG]).status_code == 200
    old_images = day_feed(me, me.nickname, kst(year, 3, 1)).json()["imageIdList"]
    assert like(fan, me.nickname, kst(year, 3, 1, 9)).json() == {"like": True}

    edited = kst(year, 3, 1, 9, 0, 0, 1)  # the client's date round-trip may move a hundredth
    resp = me.save_feed(edited, happiness=5, categories="music", text="수정", images=[JPEG], is_public=False)
    assert resp.json() == {"success": True, "message": "등록 성공"}
    body = day_feed(me, me.nickname, kst(year, 3, 1)).json()
    assert (body["date"], body["happiness"], body["text"], body["isPublic"]) == (edited, 5, "수정", False)
    assert body["categoryList"] == ["music"] and len(body["imageIdList"]) == 1
    assert body["likeNicknameList"] == [fan.nickname]
    assert all(http.get(f"/feed-service/image/{i}").status_code == 404 for i in old_images)


def test_find_day_feed_without_an_entry_is_an_empty_200(http: httpx.Client) -> None:
    me = member(http)
    resp = day_feed(me, me.nickname, kst(unique_year(), 5, 5))
    assert resp.status_code == 200 and resp.content == b""


def test_find_detail_feed_with_query_parameters_on_a_post(http: httpx.Client) -> None:
    author, viewer, year = member(http), member(http), unique_year()
    date = kst(year, 1, 20, 9, 30, 11, 50)
    author.save_feed(date, happiness=5, categories="nature", text="산책", weather="sunny", images=[PNG])
    resp = detail_feed(viewer, author.nickname, date)
    assert resp.status_code == 200
    ids = resp.json()["imageIdList"]
    assert resp.json() == {
        "text": "산책",
        "imageIdList": ids,
        "categoryList": ["nature"],
        "date": date,
        "weather": "sunny",
        "happiness": 5,
        "nickname": author.nickname,
        "isLiked": False,
    }
    like(viewer, author.nickname, date)
    assert detail_feed(viewer, author.nickname, date).json()["isLiked"] is True
    assert detail_feed(viewer, author.nickname, kst(year, 1, 21)).status_code == 404


def test_find_other_feed_pages_the_days_public_entries(http: httpx.Client) -> None:
    year = unique_year()
    a, b, c, viewer = member(http), member(http), member(http), member(http)
    a.save_feed(kst(year, 6, 1, 8), categories="")  # no categories: listed as []
    b.save_feed(kst(year, 6, 1, 12))
    c.save_feed(kst(year, 6, 1, 10), is_public=False)
    viewer.save_feed(kst(year, 6, 1, 20), images=[PNG])  # one's own public entries are included
    like(viewer, b.nickname, kst(year, 6, 1))

    def page(n: int) -> dict:
        resp = viewer.get_query(
            "/feed-service/findOtherFeed",
            {"nickname": viewer.nickname, "page": n, "size": 2, "date": kst(year, 6, 1, 23)},
        )
        assert resp.status_code == 200, resp.text
        return resp.json()

    first, second = page(0), page(1)
    assert first["numberOfElements"] == 2 and first["pageNumber"] == 0 and first["pageSize"] == 2
    assert first["isLast"] is False
    assert [(f["nickname"], f["isLiked"]) for f in first["content"]] == [
        (viewer.nickname, False),
        (b.nickname, True),
    ]
    assert second == {
        "content": [
            {
                "nickname": a.nickname,
                "weather": "partlyCloudy",
                "date": kst(year, 6, 1, 8),
                "happiness": 4,
                "text": "친구랑 카페에서 수다",
                "categoryList": [],
                "imageIdList": [],
                "isLiked": False,
            }
        ],
        "numberOfElements": 1,
        "pageNumber": 1,
        "pageSize": 2,
        "isLast": True,
    }
    assert page(2) == {"content": [], "numberOfElements": 0, "pageNumber": 2, "pageSize": 2, "isLast": True}
    # The "total" sort omits date and lists every day, newest first.
    total = viewer.get_query(
        "/feed-service/findOtherFeed", {"nickname": viewer.nickname, "page": 0, "size": 21}
    ).json()
    dates = [f["date"] for f in total["content"]]
    assert dates == sorted(dates, reverse=True) and total["pageSize"] == 21


def test_find_user_feed_lists_one_authors_public_entries(http: httpx.Client) -> None:
    author, viewer, year = member(http), member(http), unique_year()
    for day in (1, 2, 3):
        author.save_feed(kst(year, 7, day), happiness=day)
    author.save_feed(kst(year, 7, 4), is_public=False)

    def page(app, n: int) -> dict:
        params = {"dstNickname": author.nickname, "page": n, "size": 2, "srcNickname": app.nickname}
        resp = app.get_query("/feed-service/findUserFeed", params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    first, second = page(viewer, 0), page(viewer, 1)
    assert [f["happiness"] for f in first["content"]] == [3, 2] and first["isLast"] is False
    assert [f["happiness"] for f in second["content"]] == [1] and second["isLast"] is True
    # Even the author sees only public entries here (the profile screen shows what others see).
    assert [f["happiness"] for f in page(author, 0)["content"]] == [3, 2]


def test_update_public_status_accepts_the_clients_json_body(http: httpx.Client) -> None:
    me, year = member(http), unique_year()
    date = kst(year, 8, 8)
    me.save_feed(date)
    headers = {"Authorization": me.access, "email": me.email}
    resp = http.post(
        "/feed-service/updatePublicStatus", json={"date": date, "nickname": me.nickname}, headers=headers
    )
    assert resp.status_code == 200
    assert resp.json() == {"success": True, "message": "업데이트 성공", "isPublic": False}
    assert day_feed(me, me.nickname, date).json()["isPublic"] is False
    # With isPublic it sets instead of toggling, so a retried request does not flip it back.
    for _ in range(2):
        resp = http.post(
            "/feed-service/updatePublicStatus",
            json={"date": date, "nickname": me.nickname, "isPublic": True},
            headers=headers,
        )
        assert resp.json()["isPublic"] is True
    missing = http.post(
        "/feed-service/updatePublicStatus",
        json={"date": kst(year, 8, 9), "nickname": me.nickname},
        headers=headers,
    )
    assert missing.status_code == 404


def test_update_like_toggles_and_a_new_like_is_pushed_to_the_author(
    http: httpx.Client, fcm_emulator: FcmEmulator
) -> None:
    author, fan, year = member(http), member(http), unique_year()
    date = kst(year, 1, 20, 9, 30, 11, 50)
    author.save_feed(date)
    assert like(fan, author.nickname, date).json() == {"like": True}
    assert day_feed(author, author.nickname, date).json()["likeNicknameList"] == [fan.nickname]

    deadline = time.monotonic() + 30
    while not (received := fcm_emulator.messages(author.device_token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(received) == 1
    message = received[0]["message"]
    assert message["notification"] == {
        "title": "소소해피",
        "body": f"{fan.nickname}님이 {author.nickname}님의 행복을 응원합니다\U0001fa77",
    }
    assert message["data"] == {"date": str(date)}

    assert like(fan, author.nickname, date).json() == {"like": False}
    assert day_feed(author, author.nickname, date).json()["likeNicknameList"] == []
    assert like(fan, author.nickname, date).json() == {"like": True}  # liked again: notified only once
    assert like(author, author.nickname, date).json() == {"like": True}  # self-like: no push
    time.sleep(2)
    assert len(fcm_emulator.messages(author.device_token)) == 1
    assert like(fan, author.nickname, kst(year, 1, 21)).status_code == 404


def test_delete_feed_removes_the_entry_and_its_images(http: httpx.Client) -> None:
    me, year = member(http), unique_year()
    date = kst(year, 9, 9)
    me.save_feed(date, images=[PNG])
    [image_id] = day_feed(me, me.nickname, date).json()["imageIdList"]
    resp = me.post_multipart("/feed-service/deleteFeed", [("nickname", me.nickname), ("date", str(date))])
    assert resp.status_code == 200 and resp.json() == {"result": True}
    assert day_feed(me, me.nickname, date).content == b""
    assert http.get(f"/feed-service/image/{image_id}").status_code == 404
    again = me.post_multipart("/feed-service/deleteFeed", [("nickname", me.nickname), ("date", str(date))])
    assert again.status_code == 404


def test_find_feed_image_returns_standard_base64(http: httpx.Client) -> None:
    me, year = member(http), unique_year()
    me.save_feed(kst(year, 2, 2), images=[PNG, HEIC])
    ids = day_feed(me, me.nickname, kst(year, 2, 2)).json()["imageIdList"]
    got = [me.post_multipart("/feed-service/findFeedImage", [("imageId", str(i))]).json() for i in ids]
    assert got == [{"image": base64.b64encode(PNG).decode()}, {"image": base64.b64encode(HEIC).decode()}]
    missing = me.post_multipart("/feed-service/findFeedImage", [("imageId", "1")])
    assert missing.status_code == 404


def test_image_bytes_need_no_token_and_carry_their_real_type_etag_and_caching(http: httpx.Client) -> None:
    me, year = member(http), unique_year()
    me.save_feed(kst(year, 4, 4), images=[PNG, JPEG, HEIC])
    ids = day_feed(me, me.nickname, kst(year, 4, 4)).json()["imageIdList"]
    for image_id, data, mime in zip(
        ids, (PNG, JPEG, HEIC), ("image/png", "image/jpeg", "image/heic"), strict=True
    ):
        resp = http.get(f"/feed-service/image/{image_id}")  # as Kingfisher: no auth headers
        assert "authorization" not in resp.request.headers
        assert resp.status_code == 200 and resp.content == data
        assert resp.headers["content-type"] == mime
        assert resp.headers["cache-control"] == "private, max-age=31536000, immutable"
        etag = resp.headers["etag"]
        cached = http.get(f"/feed-service/image/{image_id}", headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == etag
        other = http.get(f"/feed-service/image/{image_id}", headers={"If-None-Match": '"other"'})
        assert other.status_code == 200 and other.content == data
    assert http.get("/feed-service/image/999").status_code == 404
    for bad_id in ("abc", "0", str(2**63), "1" * 4301):  # past 4,300 digits Python's int() raises
        bad = http.get(f"/feed-service/image/{bad_id}")
        assert bad.status_code == 400 and "imageId" in bad.json()["message"], bad_id


def test_large_client_pngs_round_trip(http: httpx.Client) -> None:
    """Full-resolution PNGs from the photo picker are 10–25 MB: larger than one MariaDB packet."""
    me, year = member(http), unique_year()
    big = PNG + bytes(range(256)) * (20 * 1024 * 1024 // 256)
    assert me.save_feed(kst(year, 5, 5), images=[big]).status_code == 200
    [image_id] = day_feed(me, me.nickname, kst(year, 5, 5)).json()["imageIdList"]
    resp = http.get(f"/feed-service/image/{image_id}")
    assert resp.status_code == 200 and resp.content == big
