"""Routes under ``/feed-service``: diary entries, listings, likes, images and happiness charts.

Wire format per CLIENT_CONTRACT §3.9–3.21. Identity comes from the token: ``nickname`` on writes and
``srcNickname`` everywhere name the caller (else 403, as in ``/auth-service``); every parameter that names
a user is read as its canonical nickname (``Params.nickname``: NFC, trimmed; 400 when invalid). Other
people's entries are visible only when public and their author is not blocked by the caller, otherwise
they read as absent. Reads are one short connection each, never a workflow.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.deps import ResourcesDep
from api.errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from api.images import sniff_image_type
from api.params import Params, ParamsDep
from api.push import push_in_background
from api.resources import Resources
from api.security import AuthenticatedUser, CurrentUser
from feeds import happiness
from feeds.entries import (
    MAX_HAPPINESS,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    MAX_TEXT,
    MIN_HAPPINESS,
    InvalidEntry,
    check_weather,
    clean_categories,
)
from kst.dates import InvalidDate, check_date, day_of, month_range, year_range
from storage import feeds, users
from storage.db import retry_deadlocks
from storage.feeds import FeedView, NewEntry, NewImage
from temporal.push import like_push

router = APIRouter(prefix="/feed-service", tags=["feed"])

OTHER_FEED_MAX_SIZE = 35
USER_FEED_MAX_SIZE = 25
DEFAULT_PAGE_SIZE = 7
MAX_PAGE = 100_000  # keeps OFFSET within 64 bits on every engine
MAX_ID = 2**63 - 1
IMAGE_CACHE_CONTROL = "public, max-age=31536000, immutable"  # an image id never changes its bytes
SAVED = {"success": True, "message": "등록 성공"}
_recommendation_rng = random.Random()


# -- parameters and identity -------------------------------------------------------------------


def _date(params: Params, name: str = "date") -> int:
    try:
        return check_date(params.required_integer(name))
    except InvalidDate as exc:
        raise BadRequest(f"{name} {exc}") from None


def _require_self(conn: Connection, user: AuthenticatedUser, nickname: str, field: str) -> str:
    """The caller's nickname, which ``field`` must name."""
    own = users.nickname_of(conn, user.id)
    if own is None or own != nickname:
        raise Forbidden(f"{field} must be the caller's own nickname")
    return own


def _visible(conn: Connection, viewer_id: int, author_id: int, is_public: bool) -> bool:
    """Own entries always; others' when public and their author is not blocked by the viewer."""
    return author_id == viewer_id or (is_public and not users.is_blocked(conn, viewer_id, author_id))


def _page(params: Params, max_size: int) -> tuple[int, int]:
    page = params.integer("page", required=False, minimum=0, maximum=MAX_PAGE, default=0)
    size = params.integer("size", required=False, minimum=1, maximum=max_size, default=DEFAULT_PAGE_SIZE)
    assert page is not None and size is not None
    return page, size


# -- response shapes (§6.1) ---------------------------------------------------------------------


def _entry_view(feed: FeedView) -> dict[str, Any]:
    return {
        "nickname": feed.nickname,
        "weather": feed.weather,
        "date": feed.date,
        "happiness": feed.happiness,
        "text": feed.text,
        "categoryList": feed.categories,
        "imageIdList": feed.image_ids,
    }


def _owner_view(feed: FeedView) -> dict[str, Any]:
    """``UserFeedDto``: the author's calendar views."""
    return {**_entry_view(feed), "isPublic": feed.is_public, "likeNicknameList": feed.likers}


def _viewer_view(feed: FeedView) -> dict[str, Any]:
    """``OtherFeedDto``: someone's entry as the caller sees it."""
    return {**_entry_view(feed), "isLiked": feed.liked}


def _slice(content: list[FeedView], page: int, size: int, is_last: bool) -> JSONResponse:
    return JSONResponse(
        {
            "content": [_viewer_view(f) for f in content],
            "numberOfElements": len(content),
            "pageNumber": page,
            "pageSize": size,
            "isLast": is_last,
        }
    )


# -- writes -------------------------------------------------------------------------------------


async def _images(params: Params) -> list[NewImage]:
    uploads = params.files("imageList")
    if len(uploads) > MAX_IMAGES:
        raise BadRequest(f"imageList must have at most {MAX_IMAGES} images, got {len(uploads)}")
    images = []
    for index, upload in enumerate(uploads):
        data = await upload.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise PayloadTooLarge(f"imageList[{index}] is over {MAX_IMAGE_BYTES} bytes")
        content_type = sniff_image_type(data)
        if content_type is None:
            raise BadRequest(f"imageList[{index}] is not a JPEG, PNG or HEIC image")
        images.append(NewImage(content_type, data))
    return images


@router.post("/saveFeed")
async def save_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Create or replace the caller's entry for the day of ``date`` (categories and images replaced,
    likes kept)."""
    nickname = params.nickname("nickname")
    date = _date(params)
    happiness_value = params.required_integer("happiness", minimum=MIN_HAPPINESS, maximum=MAX_HAPPINESS)
    is_public = params.boolean("isPublic")
    text = params.text("text", required=False, max_length=MAX_TEXT) or ""
    try:
        weather = check_weather(params.required_text("weather", max_length=32))
        categories = clean_categories(params.string_list("categoryList"))
    except InvalidEntry as exc:
        raise BadRequest(str(exc)) from None
    images = await _images(params)

    def save() -> None:
        with res.engine.begin() as conn:
            _require_self(conn, user, nickname, "nickname")
            entry = NewEntry(
                user.id, date, weather, happiness_value, text, bool(is_public), categories, images
            )
            feeds.save_entry(conn, entry)

    await run_in_threadpool(retry_deadlocks, save)
    return SAVED


@router.post("/updatePublicStatus")
def update_public_status(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Set the visibility of the caller's entry of that day to ``isPublic``, or toggle it when the
    client sends only ``nickname`` and ``date`` (form, multipart, query or JSON)."""
    nickname = params.nickname("nickname")
    date = _date(params)
    wanted = params.boolean("isPublic", required=False)
    with res.engine.begin() as conn:
        _require_self(conn, user, nickname, "nickname")
        new = feeds.set_public(conn, user.id, date, wanted)
    if new is None:
        raise NotFound(f"no entry of yours on {day_of(date)}")
    return {"success": True, "message": "업데이트 성공", "isPublic": new}


@router.post("/deleteFeed")
def delete_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, Any]:
    """Delete the caller's entry of that day with its images, categories and likes."""
    nickname = params.nickname("nickname")
    date = _date(params)
    with res.engine.begin() as conn:
        _require_self(conn, user, nickname, "nickname")
        if not feeds.delete_entry(conn, user.id, date):
            raise NotFound(f"no entry of yours on {day_of(date)}")
    return {"result": True}


@router.post("/updateLike")
async def update_like(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, bool]:
    """Toggle the caller's like on ``nickname``'s entry of that day; a new like on someone else's
    entry notifies its author in the background (the answer never waits for push)."""
    src = params.nickname("srcNickname")
    author_nickname = params.nickname("nickname")
    date = _date(params)

    def toggle() -> tuple[bool, int, int]:
        with res.engine.begin() as conn:
            _require_self(conn, user, src, "srcNickname")
            author_id = users.id_of(conn, author_nickname)
            feed = feeds.day_feed(conn, author_id, date) if author_id is not None else None
            if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
                raise NotFound(f"{author_nickname} has no entry you can see on {day_of(date)}")
            return feeds.toggle_like(conn, feed.id, user.id), feed.id, feed.user_id

    liked, feed_id, author_id = await run_in_threadpool(toggle)
    if liked and author_id != user.id:
        push_in_background(res, like_push(feed_id, user.id, author_id, date))
    return {"like": liked}


# -- the owner's views --------------------------------------------------------------------------


@router.post("/findDayFeed")
def find_day_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> Response:
    """``nickname``'s entry of that day, or 200 with an empty body when there is none to see."""
    nickname = params.nickname("nickname")
    date = _date(params)
    with res.engine.connect() as conn:
        feed = feeds.find_day(conn, nickname, date)
        if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
            return Response(status_code=200)
    return JSONResponse(_owner_view(feed))


@router.post("/findMonthFeed")
def find_month_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """``nickname``'s entries in the month of ``date``, newest first: all of them for the owner, the
    public ones for anyone else, none when the caller blocked the author."""
    nickname = params.nickname("nickname")
    date = _date(params)
    with res.engine.connect() as conn:
        month = feeds.find_month(conn, nickname, date)
        if month and month[0].user_id != user.id:
            visible = _visible(conn, user.id, month[0].user_id, True)
            month = [f for f in month if f.is_public and visible]
    return JSONResponse([_owner_view(f) for f in month])


# -- other people's entries ---------------------------------------------------------------------


@router.post("/findDetailFeed")
def find_detail_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """``dstNickname``'s entry of that day as ``srcNickname`` (the caller) sees it; 404 if not visible."""
    src = params.nickname("srcNickname")
    dst = params.nickname("dstNickname")
    date = _date(params)
    with res.engine.connect() as conn:
        _require_self(conn, user, src, "srcNickname")
        feed = feeds.find_day(conn, dst, date, viewer_id=user.id)
        if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
            raise NotFound(f"{dst} has no entry you can see on {day_of(date)}")
    return JSONResponse(_viewer_view(feed))


@router.get("/findOtherFeed")
def find_other_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """Everyone's public entries (of the day of ``date`` when given), newest first, minus the authors
    the caller blocked; paged in the database."""
    nickname = params.nickname("nickname")
    page, size = _page(params, OTHER_FEED_MAX_SIZE)
    day = None if params.raw("date") in (None, "", "-1", -1) else day_of(_date(params))
    with res.engine.connect() as conn:
        found = feeds.find_public_page(conn, user.id, day, page, size)
        if found.viewer_nickname != nickname:  # checked against the page's own read when it has rows
            _require_self(conn, user, nickname, "nickname")
    return _slice(found.feeds, page, size, found.is_last)


@router.get("/findUserFeed")
def find_user_feed(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """``dstNickname``'s public entries, newest first; an empty page when the caller blocked them."""
    src = params.nickname("srcNickname")
    dst = params.nickname("dstNickname")
    page, size = _page(params, USER_FEED_MAX_SIZE)
    with res.engine.connect() as conn:
        _require_self(conn, user, src, "srcNickname")
        author_id = users.id_of(conn, dst)
        if author_id is None or users.is_blocked(conn, user.id, author_id):
            return _slice([], page, size, True)
        content, is_last = feeds.find_author_page(conn, author_id, user.id, page, size)
    return _slice(content, page, size, is_last)


# -- images -------------------------------------------------------------------------------------


def _image_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise BadRequest(f"imageId must be a positive 64-bit integer, got {raw[:40]!r}")
    return int(raw)


@router.post("/findFeedImage")
def find_feed_image(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, str]:
    """An image of an entry the caller can see, base64 in JSON (used when editing one's own entry)."""
    image_id = params.required_integer("imageId", minimum=1, maximum=MAX_ID)
    with res.engine.connect() as conn:
        meta = feeds.image_meta(conn, image_id)
        if meta is None or not _visible(conn, user.id, meta.owner_id, meta.is_public):
            raise NotFound(f"no image {image_id}")
        data = feeds.image_bytes(conn, image_id)
    return {"image": base64.b64encode(data).decode()}


@router.get("/image/{image_id}")
def image(image_id: str, request: Request, res: ResourcesDep) -> Response:
    """The image bytes with their real type; no token (Kingfisher sends none). ``ETag`` and a year of
    ``Cache-Control``; 304 when ``If-None-Match`` already names it."""
    number = _image_id(image_id)
    with res.engine.connect() as conn:
        meta = feeds.image_meta(conn, number)
        if meta is None:
            raise NotFound(f"no image {number}")
        headers = {"ETag": f'"{meta.etag}"', "Cache-Control": IMAGE_CACHE_CONTROL}
        if _etag_matches(request.headers.get("if-none-match"), meta.etag):
            return Response(status_code=304, headers=headers)
        data = feeds.image_bytes(conn, number)
    return Response(data, media_type=meta.content_type, headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return "*" in tags or etag in tags


# -- happiness (§7) -----------------------------------------------------------------------------


def _own_entries(params: Params, user: AuthenticatedUser, res: Resources, span: str) -> tuple[int, list]:
    nickname = params.nickname("nickname")
    date = _date(params)
    start, end = month_range(date) if span == "month" else year_range(date)
    with res.engine.connect() as conn:
        _require_self(conn, user, nickname, "nickname")
        return date, feeds.entries_between(conn, user.id, start, end)


@router.post("/analysisHappiness")
def analysis_happiness(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> dict[str, list[str]]:
    """The caller's best categories of the month and sentences recommending them (never empty)."""
    _, entries = _own_entries(params, user, res, "month")
    return happiness.analysis(entries, _recommendation_rng)


@router.post("/findMonthHappiness")
def find_month_happiness(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """One point per day of the requested month (``formattedDate`` ``"1"``…)."""
    date, entries = _own_entries(params, user, res, "month")
    return JSONResponse(happiness.month_chart(date, entries))


@router.post("/findYearHappiness")
def find_year_happiness(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """Twelve monthly means ``Jan``…``Dec`` of the requested year."""
    _, entries = _own_entries(params, user, res, "year")
    return JSONResponse(happiness.year_chart(entries))
