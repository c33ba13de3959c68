"""What each endpoint answers with (CLIENT_CONTRACT §3), as the models the routes return.

The client decodes these with Swift's ``JSONDecoder``: key names exact (camelCase), every non-optional
field present and not ``null``; so every field here is required unless the client's type is optional.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import to_json

from api.params import WIRE
from storage.feeds import FeedView


class AuthorizeCodeBody(BaseModel):
    """getAuthorizeCode: the single-use code (10 minutes) to present to signIn."""

    model_config = WIRE
    authorize_code: str


class SignInBody(BaseModel):
    """signIn: the tokens are in the response headers; an empty nickname means a new user."""

    nickname: str = Field(examples=["소소해피", ""])


class AccountResult(BaseModel):
    """signOut, resign, setProfile: the caller's account e-mail and the outcome."""

    email: str = Field(examples=["jin.so@gmail.com+kakao"])
    success: bool


class DuplicateNicknameBody(BaseModel):
    """checkDuplicateNickname (the owner's e-mail is never revealed: always ``null``)."""

    model_config = WIRE
    email: str | None = None
    is_present: bool = Field(description="another user has this nickname or one that looks alike")


class ProfileImageBody(BaseModel):
    """findProfileImg: standard base64; both ``""`` for an unknown user or no picture."""

    model_config = WIRE
    nickname: str
    profile_img: str


class IntroductionBody(BaseModel):
    """findIntroduction (``""`` when none)."""

    introduction: str


class SuccessBody(BaseModel):
    """block, unblock."""

    success: bool


class SavedBody(BaseModel):
    """saveFeed."""

    success: bool
    message: str = Field(examples=["등록 성공"])


class PublicStatusBody(BaseModel):
    """updatePublicStatus: the entry's visibility now."""

    model_config = WIRE
    success: bool
    message: str = Field(examples=["업데이트 성공"])
    is_public: bool


class DeletedBody(BaseModel):
    """deleteFeed."""

    result: bool


class LikeBody(BaseModel):
    """updateLike: the new state (``true``: now liked)."""

    like: bool


class _Entry(BaseModel):
    model_config = WIRE
    nickname: str
    weather: str
    date: int = Field(description="16-digit KST timestamp yyyyMMddHHmmssSS")
    happiness: int
    text: str
    category_list: list[str]
    image_id_list: list[int]


class OwnerFeed(_Entry):
    """``FindAccountFeedResponse``: an entry on its author's calendar (findDayFeed, findMonthFeed)."""

    is_public: bool
    like_nickname_list: list[str]

    @classmethod
    def of(cls, feed: FeedView) -> OwnerFeed:
        """The view of a stored entry."""
        return cls.model_construct(**_owner_wire(feed))


class ViewerFeed(_Entry):
    """Someone's entry as the caller sees it (findDetailFeed, the pages' ``content``)."""

    is_liked: bool

    @classmethod
    def of(cls, feed: FeedView) -> ViewerFeed:
        """The view of a stored entry."""
        return cls.model_construct(**_viewer_wire(feed))


class FeedPage(BaseModel):
    """findOtherFeed, findUserFeed: one 0-based page; paging stops at ``isLast``."""

    model_config = WIRE
    content: list[ViewerFeed]
    number_of_elements: int
    page_number: int
    page_size: int
    is_last: bool


class FeedImageBody(BaseModel):
    """findFeedImage: standard base64 of the image bytes."""

    image: str


class AnalysisBody(BaseModel):
    """analysisHappiness: the month's best categories and sentences recommending them (never empty)."""

    model_config = WIRE
    best_category_list: list[str]
    recommend_category_list: list[str] = Field(min_length=1)


class ChartPoint(BaseModel):
    """One point of findMonthHappiness (``formattedDate`` ``"1"``…) or findYearHappiness (``"Jan"``…)."""

    model_config = WIRE
    happiness: float
    formatted_date: str


# -- bodies serialized in the route (a listing's whole answer in one call into pydantic's core) --------


def _wire_entry(feed: FeedView) -> dict[str, Any]:
    return {
        "nickname": feed.nickname,
        "weather": feed.weather,
        "date": feed.date,
        "happiness": feed.happiness,
        "text": feed.text,
        "categoryList": feed.categories,
        "imageIdList": feed.image_ids,
    }


def _owner_wire(feed: FeedView) -> dict[str, Any]:
    return {**_wire_entry(feed), "isPublic": feed.is_public, "likeNicknameList": feed.likers}


def _viewer_wire(feed: FeedView) -> dict[str, Any]:
    return {**_wire_entry(feed), "isLiked": feed.liked}


def owner_feeds_json(feeds: list[FeedView]) -> bytes:
    """findMonthFeed's body: the bytes FastAPI writes for ``response_model=list[OwnerFeed]``
    (``tests/api/test_bodies.py`` holds them equal), serialized from the wire names in one call into
    pydantic's core. No validation pass: a ``FeedView`` is typed by the query that built it, and
    validating 31 entries again cost as much as writing them."""
    return to_json([_owner_wire(f) for f in feeds])


def feed_page_json(feeds: list[FeedView], page: int, size: int, is_last: bool) -> bytes:
    """findOtherFeed's and findUserFeed's body: one ``FeedPage`` of ``feeds``, written as
    ``owner_feeds_json`` is."""
    return to_json(
        {
            "content": [_viewer_wire(f) for f in feeds],
            "numberOfElements": len(feeds),
            "pageNumber": page,
            "pageSize": size,
            "isLast": is_last,
        }
    )
