"""``GET /feed-service/image/{id}``: an image's bytes by its public id, streamed (CLIENT_CONTRACT §3.21).

The client's Kingfisher sends no token, so the public id is the capability (``storage.feed_images``):
an id is only ever listed to those who may see its entry, and an entry turned private gets new ids.
A public image is served to anyone with a year of shared caching. A private one is served without a
token (whoever holds its id got it from the owner's own listing) or with the owner's token, never to
another user's token (404, as an unknown id), and never cached by anyone but the client itself.
The bytes are streamed from one consistent read of their chunks (``api.image_streams``: a download
that has begun is never cut short), with ``ETag``/304 and a single ``Range`` (206, 416).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.byte_ranges import ByteRange, RangeNotSatisfiable, if_range_allows, requested_range
from api.deps import ResourcesDep
from api.errors import BadRequest, NotFound, UnsatisfiableRange, error_responses
from api.forms import MAX_ID
from api.image_streams import image_bytes
from api.resources import Resources
from api.security import token_user_id
from storage import feed_images
from storage.feed_images import ImageMeta

router = APIRouter(prefix="/feed-service", tags=["feed"], responses=error_responses(400, 403, 503))

IMAGE_TYPES = ("image/jpeg", "image/png", "image/heic")
#: A public id never changes its bytes (an edit uploads new images, with new ids), so the client keeps
#: it for good; but no shared cache (a CDN, a caching proxy) may: one would go on serving the image
#: after its entry is deleted or made private, or its author resigns, when the id answers 404 here.
PUBLIC_CACHE = "private, max-age=31536000, immutable"
#: A private image: no shared cache may keep it, and the client keeps it only as long as it wants to.
PRIVATE_CACHE = "private, no-store"
_BYTES = {t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES}


def _public_id(raw: str) -> int:
    # At most 20 characters before int(): Python refuses to convert more than 4,300 digits.
    if len(raw) > 20 or not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
        raise BadRequest(f"imageId must be a positive 64-bit integer, got {raw[:40]!r}")
    return int(raw)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return "*" in tags or etag in tags


async def _may_see(request: Request, res: Resources, meta: ImageMeta) -> bool:
    """Public: anyone. Private: a request with no token, or with its owner's."""
    if meta.is_public:
        return True
    authorization = request.headers.get("authorization")
    if not authorization:
        return True
    return await token_user_id(res, authorization, request.headers.get("email")) == meta.owner_id


@router.get(
    "/image/{image_id}",
    response_class=Response,
    responses={
        200: {"description": "the image bytes (no token needed)", "content": _BYTES},
        206: {"description": "the byte range `Range` asked for (`Content-Range`)", "content": _BYTES},
        304: {"description": "`If-None-Match` already names this image"},
        **error_responses(404, 416),
    },
    openapi_extra={"security": []},
)
async def image(
    image_id: Annotated[
        str, Path(description="a public image id", json_schema_extra={"pattern": "^[0-9]{1,19}$"})
    ],
    request: Request,
    res: ResourcesDep,
    range_header: Annotated[
        str | None, Header(alias="Range", description="one byte range, e.g. `bytes=0-1023` or `bytes=-500`")
    ] = None,
    if_range: Annotated[str | None, Header(description="serve `Range` only if this is the ETag")] = None,
    if_none_match: Annotated[str | None, Header(description="ETags the caller holds")] = None,
) -> Response:
    """The image bytes with their real type, streamed; no token needed (Kingfisher sends none).
    ``ETag`` (SHA-256) and 304 for a matching ``If-None-Match``; a single ``Range`` gets 206, one
    past the end 416. Public images are cacheable for a year; a private image only reaches a request
    without a token or with its owner's (``private, no-store``); 404 for an unknown or replaced id."""
    number = _public_id(image_id)

    def lookup() -> ImageMeta | None:
        with res.engine.connect() as conn:
            return feed_images.image_meta(conn, number)

    meta = await run_in_threadpool(lookup)
    if meta is None or not await _may_see(request, res, meta):
        raise NotFound(f"no image {number}")
    headers = {
        "ETag": f'"{meta.etag}"',
        "Cache-Control": PUBLIC_CACHE if meta.is_public else PRIVATE_CACHE,
        "Accept-Ranges": "bytes",
    }
    if _etag_matches(if_none_match, meta.etag):
        return Response(status_code=304, headers=headers)
    wanted, status = ByteRange(0, meta.byte_size - 1), 200
    if if_range_allows(if_range, meta.etag):
        try:
            asked = requested_range(range_header, meta.byte_size)
        except RangeNotSatisfiable:
            raise UnsatisfiableRange(
                f"Range {str(range_header)[:40]!r} starts past the image's {meta.byte_size} bytes",
                meta.byte_size,
            ) from None
        if asked is not None:
            wanted, status = asked, 206
            headers["Content-Range"] = asked.content_range(meta.byte_size)
    body = await image_bytes(res.engine, res.image_spools, meta.id, wanted)
    if body is None:  # deleted or replaced since the lookup: nothing was sent yet
        raise NotFound(f"no image {number}")
    headers["Content-Length"] = str(wanted.length)
    return StreamingResponse(body, status_code=status, media_type=meta.content_type, headers=headers)
