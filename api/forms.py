"""What the client sends to each endpoint (CLIENT_CONTRACT §3), as the models the routes parse with.

Field names are the wire's (camelCase aliases); types, bounds and enums are the checks the routes apply,
so ``/openapi.json`` documents exactly what is accepted. Rules that need the database (whose nickname,
which entry) stay in the routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import UploadFile
from pydantic import AfterValidator, Field

from accounts.emails import MAX_EMAIL_LENGTH, InvalidEmail, validated_email
from api.params import (
    ClientForm,
    CommaList,
    FreeText,
    Integer,
    KstDate,
    Nickname,
    OptionalKstDate,
    refuse,
)
from feeds.entries import (
    CATEGORIES,
    MAX_CATEGORIES,
    MAX_HAPPINESS,
    MAX_IMAGES,
    MAX_TEXT,
    MIN_HAPPINESS,
    WEATHERS,
    InvalidEntry,
    check_weather,
    clean_categories,
)
from temporal.accounts import PROVIDERS

T = TypeVar("T")
MAX_ACCOUNT_EMAIL = 320
MAX_INTRODUCTION = 255
OTHER_FEED_MAX_SIZE = 35
USER_FEED_MAX_SIZE = 25
DEFAULT_PAGE_SIZE = 7
MAX_PAGE = 100_000  # pages are numbered in a 32-bit column of feed_page_marks (feeds.paging)
MAX_ID = 2**63 - 1
DEFAULT_MESSAGE_COUNT = 20
MAX_MESSAGE_COUNT = 100
#: Ids and time bounds are signed 64-bit (Mongo stores the date as Int64): below 2**63, a bound the
#: spec's JSON numbers hold exactly.
INT64_END = 2**63


def _email(value: str) -> str:
    try:
        return validated_email(value)
    except InvalidEmail as exc:
        raise refuse(str(exc)) from None


def _entry_rule(check: Callable[[T], T]) -> Callable[[T], T]:
    """``check`` as a field validator: its ``InvalidEntry`` reason is the 400's message."""

    def run(value: T) -> T:
        try:
            return check(value)
        except InvalidEntry as exc:
            raise refuse(str(exc)) from None

    return run


#: An account e-mail as the client holds it (``<email>+<provider>``; not an RFC address).
AccountEmail = Annotated[str, Field(max_length=MAX_ACCOUNT_EMAIL, examples=["jin.so@gmail.com+kakao"])]
Page = Annotated[Integer, Field(ge=0, le=MAX_PAGE, description="0-based page")]


class AuthorizeCodeForm(ClientForm):
    """getAuthorizeCode (§3.1)."""

    code_challenge: str = Field(
        max_length=256, description="lower-case hex SHA-512 of the code verifier (128 digits)"
    )


class SignInForm(ClientForm):
    """signIn (§3.2): all seven parts, always sent."""

    email: Annotated[str, Field(max_length=MAX_EMAIL_LENGTH), AfterValidator(_email)] = Field(
        description="the provider's e-mail (a plausible local@domain)", examples=["jin.so@gmail.com"]
    )
    provider: str = Field(
        max_length=16,
        description="another value is a 403",
        json_schema_extra={"enum": [*PROVIDERS]},
    )
    provider_id: FreeText = Field(
        max_length=255, description="the provider's user id", examples=["3141592653"]
    )
    code_verifier: str = Field(max_length=256, description="the plain verifier of getAuthorizeCode")
    authorize_code: str = Field(max_length=64, description="the code getAuthorizeCode answered")
    authorization_code: str = Field(
        "", max_length=8192, description="Apple only: base64 of Apple's authorizationCode; else empty"
    )
    device_token: str = Field(max_length=4096, description="the FCM registration token")


class ResignForm(ClientForm):
    """resign (§3.5)."""

    email: AccountEmail | None = Field(None, description="the caller's account e-mail (default: the token's)")


class NicknameQuery(ClientForm):
    """checkDuplicateNickname (§3.3)."""

    nickname: Nickname


class ProfileForm(ClientForm):
    """setProfile (§3.4)."""

    keep_empty = frozenset({"introduction"})

    email: AccountEmail = Field(description="the caller's account e-mail")
    nickname: Nickname
    profile_img: UploadFile | None = Field(None, description="JPEG, PNG or HEIC, at most 5 MiB")
    introduction: FreeText | None = Field(
        None, max_length=MAX_INTRODUCTION, description="trailing whitespace trimmed; empty clears it"
    )


class NicknameForm(ClientForm):
    """findProfileImg, findIntroduction (§3.6, §3.7)."""

    nickname: Nickname


class BlockForm(ClientForm):
    """block, unblock (§3.8)."""

    src_nickname: Nickname = Field(description="the caller's own nickname")
    dst_nickname: Nickname


class SaveFeedForm(ClientForm):
    """saveFeed (§3.9). The client names its image parts ``imageList[0]``, ``imageList[1]``."""

    keep_empty = frozenset({"categoryList"})

    image_list: list[UploadFile] = Field(
        [], max_length=MAX_IMAGES, description="PNG, JPEG or HEIC images, in order"
    )
    text: FreeText = Field("", max_length=MAX_TEXT)
    category_list: Annotated[CommaList, AfterValidator(_entry_rule(clean_categories))] = Field(
        description=f"up to {MAX_CATEGORIES} categories (an empty value: none); the client sends them comma-joined (`coffee,friends`)",
        json_schema_extra={
            "items": {"enum": [*sorted(CATEGORIES)]},
            "minItems": 1,
            "maxItems": MAX_CATEGORIES,
        },
    )
    is_public: bool
    date: KstDate
    weather: Annotated[str, Field(max_length=32), AfterValidator(_entry_rule(check_weather))] = Field(
        json_schema_extra={"enum": list(sorted(WEATHERS))}
    )
    happiness: Integer = Field(ge=MIN_HAPPINESS, le=MAX_HAPPINESS)
    nickname: Nickname = Field(description="the caller's own nickname")


class DayForm(ClientForm):
    """A nickname and a day: deleteFeed, findDayFeed, findMonthFeed and the happiness charts."""

    nickname: Nickname
    date: KstDate


class PublicStatusForm(ClientForm):
    """updatePublicStatus (§3.19): the client sends JSON."""

    nickname: Nickname = Field(description="the caller's own nickname")
    date: KstDate
    is_public: bool | None = Field(None, description="absent: toggle")


class LikeForm(ClientForm):
    """updateLike (§3.18)."""

    nickname: Nickname = Field(description="the entry's author")
    date: KstDate
    src_nickname: Nickname = Field(description="the caller's own nickname")


class DetailFeedQuery(ClientForm):
    """findDetailFeed (§3.12): a query string on a POST."""

    date: KstDate
    dst_nickname: Nickname = Field(description="the entry's author")
    src_nickname: Nickname = Field(description="the caller's own nickname")


class OtherFeedQuery(ClientForm):
    """findOtherFeed (§3.13)."""

    nickname: Nickname = Field(description="the caller's own nickname")
    page: Page = 0
    size: Integer = Field(DEFAULT_PAGE_SIZE, ge=1, le=OTHER_FEED_MAX_SIZE)
    date: OptionalKstDate = None


class UserFeedQuery(ClientForm):
    """findUserFeed (§3.14)."""

    dst_nickname: Nickname = Field(description="the author")
    page: Page = 0
    size: Integer = Field(DEFAULT_PAGE_SIZE, ge=1, le=USER_FEED_MAX_SIZE)
    src_nickname: Nickname = Field(description="the caller's own nickname")


class FeedImageForm(ClientForm):
    """findFeedImage (§3.20)."""

    image_id: Integer = Field(ge=1, lt=INT64_END)


class DirectMessageForm(ClientForm):
    """findDirectMessage (BACKEND_SPEC §9.1)."""

    sender: Nickname
    receiver: Nickname
    time_boundary: Integer = Field(
        ge=1, lt=INT64_END, description="exclusive upper bound of `date` (a 16-digit KST date)"
    )
    message_cnt: Integer = Field(DEFAULT_MESSAGE_COUNT, ge=1, le=MAX_MESSAGE_COUNT)


class RoomListForm(ClientForm):
    """findMultipleDirectMessage (BACKEND_SPEC §9.1)."""

    sender: Nickname = Field(description="the caller's own nickname")
