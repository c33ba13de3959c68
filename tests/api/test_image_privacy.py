"""Private means private: every listing shows images by their public id (a random capability), an image
of a private entry reaches only a request with no token (Kingfisher's) or its owner's token, never
another user's (404, as an unknown id), and is never cached for long; an entry turned private gets new
ids at once, so an id seen while it was public stops working."""

from __future__ import annotations

import httpx
import pytest

from tests.api.feed_helpers import JPEG, PNG, day_feed, detail_feed, kst, member, month_feed, unique_year
from tests.fixtures.ios_client import IOSClient

PUBLIC_CACHE = "private, max-age=31536000, immutable"


def _get(http: httpx.Client, image_id: int, app: IOSClient | None = None) -> httpx.Response:
    """The image GET as Kingfisher sends it (no token), or with ``app``'s token and e-mail."""
    headers = {"Authorization": app.access, "email": app.email} if app is not None else {}
    return http.get(f"/feed-service/image/{image_id}", headers=headers)


def _ids(app: IOSClient, date: int) -> list[int]:
    return day_feed(app, app.nickname, date).json()["imageIdList"]


def _set_public(http: httpx.Client, app: IOSClient, date: int, is_public: bool) -> None:
    resp = http.post(
        "/feed-service/updatePublicStatus",
        json={"date": date, "nickname": app.nickname, "isPublic": is_public},
        headers={"Authorization": app.access, "email": app.email},
    )
    assert resp.status_code == 200 and resp.json()["isPublic"] is is_public


def test_every_listing_shows_the_same_public_ids_and_they_fetch_the_image(http: httpx.Client) -> None:
    author, reader, year = member(http), member(http), unique_year()
    date = kst(year, 6, 6)
    assert author.save_feed(date, images=[PNG, JPEG]).status_code == 200
    ids = _ids(author, date)
    assert len(ids) == 2 and all(2**62 <= i < 2**63 for i in ids)
    assert month_feed(author, author.nickname, date).json()[0]["imageIdList"] == ids
    assert month_feed(reader, author.nickname, date).json()[0]["imageIdList"] == ids
    assert day_feed(reader, author.nickname, date).json()["imageIdList"] == ids
    assert detail_feed(reader, author.nickname, date).json()["imageIdList"] == ids
    other = reader.get_query(
        "/feed-service/findOtherFeed", {"nickname": reader.nickname, "page": 0, "size": 21, "date": date}
    ).json()["content"]
    assert [f["imageIdList"] for f in other if f["nickname"] == author.nickname] == [ids]
    user = reader.get_query(
        "/feed-service/findUserFeed",
        {"srcNickname": reader.nickname, "dstNickname": author.nickname, "page": 0, "size": 21},
    ).json()["content"]
    assert [f["imageIdList"] for f in user] == [ids]
    for image_id, data in zip(ids, (PNG, JPEG), strict=True):
        assert _get(http, image_id).content == data
        found = reader.post_multipart("/feed-service/findFeedImage", [("imageId", str(image_id))])
        assert found.status_code == 200 and found.json()["image"]


def test_a_private_image_reaches_no_token_and_its_owner_but_no_other_user(http: httpx.Client) -> None:
    owner, intruder, year = member(http), member(http), unique_year()
    date = kst(year, 7, 7)
    assert owner.save_feed(date, images=[PNG], is_public=False).status_code == 200
    [image_id] = _ids(owner, date)
    for resp in (_get(http, image_id), _get(http, image_id, owner)):
        assert resp.status_code == 200 and resp.content == PNG
        assert resp.headers["cache-control"] == "private, no-store"
    refused, unknown = _get(http, image_id, intruder), _get(http, 2**62 + 12345, intruder)
    assert refused.status_code == unknown.status_code == 404
    assert refused.content.replace(str(image_id).encode(), b"N") == unknown.content.replace(
        str(2**62 + 12345).encode(), b"N"
    )  # nothing tells the intruder the image exists
    broken = http.get(
        f"/feed-service/image/{image_id}", headers={"Authorization": "Bearer nope", "email": owner.email}
    )
    assert broken.status_code == 404  # a token that is not the owner's is not the owner
    find = intruder.post_multipart("/feed-service/findFeedImage", [("imageId", str(image_id))])
    assert find.status_code == 404
    assert (
        owner.post_multipart("/feed-service/findFeedImage", [("imageId", str(image_id))]).status_code == 200
    )


def test_a_public_image_is_served_to_any_token_with_long_caching(http: httpx.Client) -> None:
    owner, other, year = member(http), member(http), unique_year()
    date = kst(year, 7, 8)
    owner.save_feed(date, images=[PNG])
    [image_id] = _ids(owner, date)
    for app in (None, owner, other):
        resp = _get(http, image_id, app)
        assert resp.status_code == 200 and resp.headers["cache-control"] == PUBLIC_CACHE


def test_turning_an_entry_private_retires_its_image_ids_at_once(http: httpx.Client) -> None:
    owner, year = member(http), unique_year()
    date = kst(year, 8, 1)
    owner.save_feed(date, images=[PNG, JPEG])
    public_ids = _ids(owner, date)
    assert all(_get(http, i).status_code == 200 for i in public_ids)

    _set_public(http, owner, date, False)
    for old in public_ids:  # with no token, and even with the owner's
        assert _get(http, old).status_code == 404 and _get(http, old, owner).status_code == 404
    private_ids = _ids(owner, date)
    assert len(private_ids) == 2 and not set(private_ids) & set(public_ids)
    for new, data in zip(private_ids, (PNG, JPEG), strict=True):
        resp = _get(http, new)
        assert resp.content == data and resp.headers["cache-control"] == "private, no-store"

    _set_public(http, owner, date, False)  # already private: nothing to retire
    assert _ids(owner, date) == private_ids
    _set_public(http, owner, date, True)  # ids only the owner saw may become public as they are
    assert _ids(owner, date) == private_ids
    assert _get(http, private_ids[0]).headers["cache-control"] == PUBLIC_CACHE


@pytest.mark.parametrize("toggle", [True, False], ids=["toggled", "set"])
def test_the_toggle_without_is_public_rotates_too(http: httpx.Client, toggle: bool) -> None:
    owner, year = member(http), unique_year()
    date = kst(year, 8, 2)
    owner.save_feed(date, images=[PNG])
    [old] = _ids(owner, date)
    body: dict[str, object] = {"date": date, "nickname": owner.nickname}
    if not toggle:
        body["isPublic"] = False
    resp = http.post(
        "/feed-service/updatePublicStatus",
        json=body,
        headers={"Authorization": owner.access, "email": owner.email},
    )
    assert resp.json()["isPublic"] is False
    assert _get(http, old).status_code == 404
    [new] = _ids(owner, date)
    assert _get(http, new).status_code == 200


def test_saving_an_entry_again_as_private_retires_its_public_ids(http: httpx.Client) -> None:
    owner, year = member(http), unique_year()
    date = kst(year, 8, 3)
    owner.save_feed(date, images=[PNG])
    [public_id] = _ids(owner, date)
    # The edit screen downloads the images (findFeedImage) and uploads them again with the new fields.
    assert owner.save_feed(date, images=[PNG], is_public=False).status_code == 200
    [private_id] = _ids(owner, date)
    assert private_id != public_id
    assert _get(http, public_id).status_code == 404
    assert _get(http, private_id).headers["cache-control"] == "private, no-store"
