"""Routes under ``/feed-service``: diary entries, listings, likes, images and happiness charts.

Wire format per CLIENT_CONTRACT §3.9–3.21. Identity comes from the token: ``nickname`` on writes and
``srcNickname`` everywhere name the caller (else 403, as in ``/auth-service``); every parameter that names
a user is read as its canonical nickname (``Params.nickname``: NFC, trimmed; 400 when invalid). Other
people's entries are visible only when public and their author is not blocked by the caller (nor
resigning: ``storage`` leaves such authors out), otherwise they read as absent. Reads are one short connection each, never a workflow.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Form, Query, UploadFile
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from api.bodies import (
    AnalysisBody,
    ChartPoint,
    DeletedBody,
    FeedImageBody,
    FeedPage,
    LikeBody,
    OwnerFeed,
    PublicStatusBody,
    SavedBody,
    ViewerFeed,
    feed_page_json,
    owner_feeds_json,
)
from api.deps import ResourcesDep
from api.errors import BadRequest, NotFound, NotTheCaller, PayloadTooLarge, TooManyRequests, error_responses
from api.forms import (
    DayForm,
    DetailFeedQuery,
    FeedImageForm,
    LikeForm,
    OtherFeedQuery,
    PublicStatusForm,
    SaveFeedForm,
    UserFeedQuery,
)
from api.image_streams import base64_json, base64_json_length
from api.images import sniffed_upload_type, upload_size
from api.metrics import IMAGE_BUDGET_REFUSALS, PAGES_BEYOND_REACH
from api.params import ClientRoute
from api.push import push_in_background
from api.resources import Resources
from api.security import AuthenticatedUser, CurrentUser
from feeds import happiness
from feeds.entries import MAX_IMAGE_BYTES
from kst.dates import day_after, day_of, month_range, now_kst, year_range
from storage import feed_images, feed_pages, feeds, image_budget, users
from storage.db import retry_deadlocks
from storage.feed_images import ImageMeta, NewImage
from storage.feed_pages import ListingPage, Viewer
from storage.feeds import FeedView, NewEntry
from storage.logins import utcnow
from temporal.push import like_push

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/feed-service", tags=["feed"], route_class=ClientRoute, responses=error_responses(400, 403, 503)
)

SAVED = SavedBody(success=True, message="등록 성공")
_recommendation_rng = random.Random()
Multipart = Form(media_type="multipart/form-data")
DayParams = Annotated[DayForm, Multipart]


# -- identity -----------------------------------------------------------------------------------


def _require_self(conn: Connection, user: AuthenticatedUser, nickname: str, field: str) -> str:
    """The caller's nickname, which ``field`` must name."""
    own = users.nickname_of(conn, user.id)
    if own is None or own != nickname:
        raise NotTheCaller(f"{field} must be the caller's own nickname")
    return own


def _visible(conn: Connection, viewer_id: int, author_id: int, is_public: bool) -> bool:
    """Own entries always; others' when public and their author is not blocked by the viewer."""
    return author_id == viewer_id or (is_public and not users.is_blocked(conn, viewer_id, author_id))


def _likers_hidden(conn: Connection, viewer_id: int, entries: list[FeedView]) -> list[FeedView]:
    """Someone else's entries as the calendar shapes show them to ``viewer_id``: who liked an entry is
    its author's to know; anyone else sees at most their own like (what ``isLiked`` tells them)."""
    if not entries or entries[0].user_id == viewer_id:  # one author per listing
        return entries
    own = users.nickname_of(conn, viewer_id)
    return [replace(feed, likers=[n for n in feed.likers if n == own]) for feed in entries]


# -- response shapes (§6.1) ---------------------------------------------------------------------


def _json(body: bytes) -> Response:
    """A body serialized by ``api.bodies`` from the route's ``response_model``, sent as FastAPI sends a
    returned model (``Content-Type: application/json``, ``Content-Length``)."""
    return Response(body, media_type="application/json")


# -- writes -------------------------------------------------------------------------------------


async def _images(uploads: list[UploadFile]) -> tuple[list[NewImage], int]:
    """The uploads, checked (size, sniffed type) before anything is written, and their total bytes; each
    stays a spooled file that the store copies a chunk at a time."""
    images, total = [], 0
    for index, upload in enumerate(uploads):
        size = await upload_size(upload)
        if size > MAX_IMAGE_BYTES:
            raise PayloadTooLarge(f"imageList[{index}] is over {MAX_IMAGE_BYTES} bytes")
        content_type = await sniffed_upload_type(upload)
        if content_type is None:
            raise BadRequest(f"imageList[{index}] is not a JPEG, PNG or HEIC image")
        images.append(NewImage(content_type, upload.file))
        total += size
    return images, total


def _charge_images(res: Resources, user_id: int, byte_size: int) -> int:
    """Count an entry's image bytes against the caller's daily image budget (``storage.image_budget``) in
    a transaction of their own, answering the count's id, or refuse the save (429) with when enough of
    the budget is free again."""
    budget = res.settings.image_bytes_per_user_per_day

    def charge() -> int:
        with res.engine.begin() as conn:
            return image_budget.charge(conn, user_id, byte_size, budget, utcnow())

    try:
        return retry_deadlocks(charge)
    except image_budget.OverBudget as over:
        IMAGE_BUDGET_REFUSALS.inc()
        raise TooManyRequests(
            f"these {byte_size} bytes of images would take yours of the last 24 hours over the daily "
            f"image budget of {budget} bytes; retry in {over.retry_after} s",
            over.retry_after,
        ) from None


def _refund_images(res: Resources, upload_id: int) -> None:
    """Take back the count of a save that failed; if that fails too, its bytes count for their day."""
    try:
        with res.engine.begin() as conn:
            image_budget.refund(conn, upload_id)
    except Exception as exc:
        log.warning("an image budget count was not taken back (%s)", type(exc).__name__)


@router.post("/saveFeed", responses=error_responses(413, 429))
async def save_feed(
    form: Annotated[SaveFeedForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> SavedBody:
    """Create or replace the caller's entry for the day of ``date`` (categories and images replaced,
    likes kept); its images count against the caller's daily image budget (over it: 429, nothing saved)."""
    nickname, date, happiness_value, is_public = form.nickname, form.date, form.happiness, form.is_public
    text, weather, categories = form.text, form.weather, form.category_list
    ahead = res.settings.feed_future_days
    if ahead is not None and day_of(date) > day_after(now_kst(), ahead):
        raise BadRequest(f"date must be at most {ahead} day(s) after today (KST), got {date}")
    images, image_bytes = await _images(form.image_list)

    def store() -> None:
        with res.engine.begin() as conn:
            _require_self(conn, user, nickname, "nickname")
            entry = NewEntry(
                user.id, date, weather, happiness_value, text, bool(is_public), categories, images
            )
            feeds.save_entry(conn, entry)

    def save() -> None:  # the budget's count first, so no image is written over it
        upload_id = _charge_images(res, user.id, image_bytes) if image_bytes else None
        try:
            retry_deadlocks(store)
        except BaseException:
            if upload_id is not None:
                _refund_images(res, upload_id)
            raise

    await run_in_threadpool(save)
    return SAVED


@router.post("/updatePublicStatus", responses=error_responses(404))
def update_public_status(
    form: Annotated[PublicStatusForm, Form(media_type="application/json")],
    user: CurrentUser,
    res: ResourcesDep,
) -> PublicStatusBody:
    """Set the visibility of the caller's entry of that day to ``isPublic``, or toggle it when the
    client sends only ``nickname`` and ``date`` (JSON as the client sends it; form, multipart or query
    also do)."""
    nickname, date, wanted = form.nickname, form.date, form.is_public
    with res.engine.begin() as conn:
        _require_self(conn, user, nickname, "nickname")
        new = feeds.set_public(conn, user.id, date, wanted)
    if new is None:
        raise NotFound(f"no entry of yours on {day_of(date)}")
    return PublicStatusBody(success=True, message="업데이트 성공", is_public=new)


@router.post("/deleteFeed", responses=error_responses(404))
def delete_feed(form: DayParams, user: CurrentUser, res: ResourcesDep) -> DeletedBody:
    """Delete the caller's entry of that day with its images, categories and likes."""
    nickname, date = form.nickname, form.date
    with res.engine.begin() as conn:
        _require_self(conn, user, nickname, "nickname")
        if not feeds.delete_entry(conn, user.id, date):
            raise NotFound(f"no entry of yours on {day_of(date)}")
    return DeletedBody(result=True)


@router.post("/updateLike", responses=error_responses(404))
async def update_like(form: Annotated[LikeForm, Multipart], user: CurrentUser, res: ResourcesDep) -> LikeBody:
    """Toggle the caller's like on ``nickname``'s entry of that day; a new like on someone else's
    entry notifies its author in the background (the answer never waits for push), unless the author
    has blocked the caller: the like is kept and answered as any other (blocking is one-directional
    and the blocked user is not told, BACKEND_SPEC A9), but no notice reaches the author's lock
    screen, as no DM from them does."""
    src, author_nickname, date = form.src_nickname, form.nickname, form.date

    def toggle() -> tuple[bool, int, int, bool]:
        with res.engine.begin() as conn:
            _require_self(conn, user, src, "srcNickname")
            author_id = users.active_id_of(conn, author_nickname)
            # Locked before it is judged: an entry deleted or made private meanwhile is waited for and
            # then seen as it is now (a like on a deleted row would break its foreign key).
            feed = feeds.day_feed(conn, author_id, date, lock=True) if author_id is not None else None
            if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
                raise NotFound(f"{author_nickname} has no entry you can see on {day_of(date)}")
            liked = feeds.toggle_like(conn, feed.id, user.id)
            notify = liked and feed.user_id != user.id and not users.is_blocked(conn, feed.user_id, user.id)
            return liked, feed.id, feed.user_id, notify

    liked, feed_id, author_id, notify = await run_in_threadpool(toggle)
    if notify:
        push_in_background(res, like_push(feed_id, user.id, author_id, date))
    return LikeBody(like=liked)


# -- the owner's views --------------------------------------------------------------------------


@router.post(
    "/findDayFeed",
    response_model=OwnerFeed | None,
    responses={
        200: {"description": "the entry, or an empty body (no `Content-Type`) when there is none to see"}
    },
)
def find_day_feed(form: DayParams, user: CurrentUser, res: ResourcesDep) -> Response | OwnerFeed:
    """``nickname``'s entry of that day, or 200 with an empty body when there is none to see (someone
    else's shows no likers but the caller)."""
    nickname, date = form.nickname, form.date
    with res.engine.connect() as conn:
        feed = feeds.find_day(conn, nickname, date)
        if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
            return Response(status_code=200)
        [feed] = _likers_hidden(conn, user.id, [feed])
    return OwnerFeed.of(feed)


@router.post("/findMonthFeed", response_model=list[OwnerFeed])
async def find_month_feed(form: DayParams, user: CurrentUser, res: ResourcesDep) -> Response:
    """``nickname``'s entries in the month of ``date``, newest first: all of them for the owner, the
    public ones for anyone else (showing no likers but the caller), none when the caller blocked the
    author."""
    nickname, date = form.nickname, form.date

    def read() -> bytes:  # the reads and the body in one threadpool hop
        with res.engine.connect() as conn:
            month = feeds.find_month(conn, nickname, date)
            if month and month[0].user_id != user.id:
                visible = _visible(conn, user.id, month[0].user_id, True)
                month = _likers_hidden(conn, user.id, [f for f in month if f.is_public and visible])
        return owner_feeds_json(month)

    return _json(await run_in_threadpool(read))


# -- other people's entries ---------------------------------------------------------------------


@router.post("/findDetailFeed", responses=error_responses(404))
def find_detail_feed(
    query: Annotated[DetailFeedQuery, Query()], user: CurrentUser, res: ResourcesDep
) -> ViewerFeed:
    """``dstNickname``'s entry of that day as ``srcNickname`` (the caller) sees it; 404 if not visible."""
    src, dst, date = query.src_nickname, query.dst_nickname, query.date
    with res.engine.connect() as conn:
        _require_self(conn, user, src, "srcNickname")
        feed = feeds.find_day(conn, dst, date, viewer_id=user.id)
        if feed is None or not _visible(conn, user.id, feed.user_id, feed.is_public):
            raise NotFound(f"{dst} has no entry you can see on {day_of(date)}")
    return ViewerFeed.of(feed)


def _counted(page: ListingPage, listing: str) -> ListingPage:
    if page.beyond_reach:
        PAGES_BEYOND_REACH.labels(listing).inc()
    return page


@router.get("/findOtherFeed", response_model=FeedPage)
async def find_other_feed(
    query: Annotated[OtherFeedQuery, Query()], user: CurrentUser, res: ResourcesDep
) -> Response:
    """Everyone's public entries (of the day of ``date`` when given), newest first, minus the authors
    the caller blocked; each page starts where the caller's previous page ended (``feeds.paging``),
    and a page far beyond any the caller has seen is an empty last page."""
    nickname, page, size = query.nickname, query.page, query.size
    day = None if query.date is None else day_of(query.date)
    viewer = Viewer(user.id, user.session_id)

    def read() -> ListingPage:
        with res.engine.begin() as conn:
            found = feed_pages.public_page(conn, viewer, day, page, size, utcnow())
            if found.viewer_nickname != nickname:  # checked against the page's own read when it has rows
                _require_self(conn, user, nickname, "nickname")
            return found

    def answer() -> bytes:  # the transaction and the body in one threadpool hop
        found = _counted(retry_deadlocks(read), "other")
        return feed_page_json(found.feeds, page, size, found.is_last)

    return _json(await run_in_threadpool(answer))


@router.get("/findUserFeed", response_model=FeedPage)
async def find_user_feed(
    query: Annotated[UserFeedQuery, Query()], user: CurrentUser, res: ResourcesDep
) -> Response:
    """``dstNickname``'s public entries, newest first, paged like findOtherFeed; an empty page when
    the caller blocked them."""
    src, dst, page, size = query.src_nickname, query.dst_nickname, query.page, query.size
    viewer = Viewer(user.id, user.session_id)

    def read() -> ListingPage:
        with res.engine.begin() as conn:
            _require_self(conn, user, src, "srcNickname")
            author_id = users.active_id_of(conn, dst)
            if author_id is None or users.is_blocked(conn, user.id, author_id):
                return ListingPage([], True)
            return feed_pages.author_page(conn, viewer, author_id, page, size, utcnow())

    def answer() -> bytes:  # the transaction and the body in one threadpool hop
        found = _counted(retry_deadlocks(read), "user")
        return feed_page_json(found.feeds, page, size, found.is_last)

    return _json(await run_in_threadpool(answer))


# -- images (the bytes by id: api/routes/images.py) ----------------------------------------------


@router.post("/findFeedImage", response_model=FeedImageBody, responses=error_responses(404))
async def find_feed_image(
    form: Annotated[FeedImageForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> Response:
    """An image of an entry the caller can see, base64 in JSON (used when editing one's own entry),
    encoded and sent a piece at a time from one consistent read (``api.image_streams``)."""
    image_id = form.image_id

    def lookup() -> ImageMeta:
        with res.engine.connect() as conn:
            meta = feed_images.image_meta(conn, image_id)
            if meta is None or not _visible(conn, user.id, meta.owner_id, meta.is_public):
                raise NotFound(f"no image {image_id}")
            return meta

    meta = await run_in_threadpool(lookup)
    body = await base64_json(res.engine, res.image_spools, meta.id, meta.byte_size)
    if body is None:  # deleted or replaced since the lookup: nothing was sent yet
        raise NotFound(f"no image {image_id}")
    return StreamingResponse(
        body,
        media_type="application/json",
        headers={"Content-Length": str(base64_json_length(meta.byte_size))},
    )


# -- happiness (§7) -----------------------------------------------------------------------------


def _own_entries(form: DayForm, user: AuthenticatedUser, res: Resources, span: str) -> tuple[int, list]:
    nickname, date = form.nickname, form.date
    start, end = month_range(date) if span == "month" else year_range(date)
    with res.engine.connect() as conn:
        _require_self(conn, user, nickname, "nickname")
        return date, feeds.entries_between(conn, user.id, start, end)


@router.post("/analysisHappiness")
def analysis_happiness(form: DayParams, user: CurrentUser, res: ResourcesDep) -> AnalysisBody:
    """The caller's best categories of the month and sentences recommending them (never empty)."""
    _, entries = _own_entries(form, user, res, "month")
    return AnalysisBody.model_validate(happiness.analysis(entries, _recommendation_rng))


@router.post("/findMonthHappiness")
def find_month_happiness(form: DayParams, user: CurrentUser, res: ResourcesDep) -> list[ChartPoint]:
    """One point per day of the requested month (``formattedDate`` ``"1"``…)."""
    date, entries = _own_entries(form, user, res, "month")
    return [ChartPoint.model_validate(point) for point in happiness.month_chart(date, entries)]


@router.post("/findYearHappiness")
def find_year_happiness(form: DayParams, user: CurrentUser, res: ResourcesDep) -> list[ChartPoint]:
    """Twelve monthly means ``Jan``…``Dec`` of the requested year."""
    _, entries = _own_entries(form, user, res, "year")
    return [ChartPoint.model_validate(point) for point in happiness.year_chart(entries)]
