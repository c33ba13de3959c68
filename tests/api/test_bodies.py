"""The listings' bodies serialized in the route are, byte for byte, what FastAPI writes for the route's
``response_model`` (the models built from the entries, validated and dumped by alias)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter

from api.bodies import FeedPage, OwnerFeed, ViewerFeed, feed_page_json, owner_feeds_json
from storage.feeds import FeedView

# fmt: off
FEEDS = [
    FeedView(9, 3, "소소해피", 2025030112000000, "sunny", 5, '좋은 날 "따옴표" \\ \n', True,
             ["coffee", "friends", "movie"], [2**62 + 1, 2**63 - 1], ["alice", "밥"], False),
    FeedView(8, 3, "소소해피", 2025030111595999, "rainy", 1, "", False),
    FeedView(7, 4, "bob", 2025022900000000, "cloudy", 3, "x" * 3000, True, [], [4611686018427387904], [], True),
]
# fmt: on


def _fastapi(model: Any, value: object) -> bytes:
    """What FastAPI's ``serialize_response`` writes for ``value`` under ``response_model=model``."""
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return adapter.dump_json(adapter.validate_python(value), by_alias=True)


def test_findmonthfeed_body_is_the_response_models() -> None:
    for feeds in (FEEDS, FEEDS[:1], []):
        body = owner_feeds_json(feeds)
        assert body == _fastapi(list[OwnerFeed], [OwnerFeed.of(f) for f in feeds])
    first = json.loads(owner_feeds_json(FEEDS))[0]
    assert list(first) == [
        "nickname", "weather", "date", "happiness", "text", "categoryList", "imageIdList", "isPublic",
        "likeNicknameList",
    ]  # fmt: skip
    assert first["imageIdList"] == [2**62 + 1, 2**63 - 1] and first["likeNicknameList"] == ["alice", "밥"]


def test_page_body_is_the_response_models() -> None:
    for feeds, page, size, is_last in ((FEEDS, 0, 3, False), (FEEDS[2:], 4, 21, True), ([], 100, 7, True)):
        body = feed_page_json(feeds, page, size, is_last)
        model = FeedPage.model_construct(
            content=[ViewerFeed.of(f) for f in feeds],
            number_of_elements=len(feeds),
            page_number=page,
            page_size=size,
            is_last=is_last,
        )
        assert body == _fastapi(FeedPage, model)
    page_body = json.loads(feed_page_json(FEEDS, 2, 3, False))
    assert list(page_body) == ["content", "numberOfElements", "pageNumber", "pageSize", "isLast"]
    assert [f["isLiked"] for f in page_body["content"]] == [False, False, True]
