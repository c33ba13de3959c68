"""Routes under ``/dm-service``: direct-message history (BACKEND_SPEC §9.1).

Identity comes from the token: the caller must be one of the room's two nicknames (findDirectMessage)
or the ``sender`` whose rooms are listed (findMultipleDirectMessage), else 403 — the original let
anyone read any room (§14.2). ``sender`` and ``receiver`` are read as canonical nicknames
(``Params.nickname``: NFC, trimmed; 400 when invalid). A history page reads MongoDB through the room index (on MongoDB only
its own index entries); the room list reads its read model in the relational store
(``storage.dm_rooms``, one row per room). Both run in the threadpool (sync endpoints).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ResourcesDep
from api.errors import Forbidden
from api.params import ParamsDep
from api.resources import Resources
from api.security import AuthenticatedUser, CurrentUser
from storage import dm_rooms, users
from storage.messages import StoredMessage

router = APIRouter(prefix="/dm-service", tags=["dm"])

DEFAULT_MESSAGE_COUNT = 20
MAX_MESSAGE_COUNT = 100
MAX_TIME_BOUNDARY = 2**63 - 1  # Mongo stores the date as Int64


def _caller_nickname(res: Resources, user: AuthenticatedUser) -> str:
    """The caller's nickname; a user who has not set one takes part in no conversation (403)."""
    with res.engine.connect() as conn:
        own = users.nickname_of(conn, user.id)
    if own is None:
        raise Forbidden("set a nickname before reading direct messages")
    return own


def _messages(found: list[StoredMessage]) -> JSONResponse:
    """``[MessageDto]`` in the order given."""
    return JSONResponse([m.wire() for m in found])


@router.post("/findDirectMessage")
def find_direct_message(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """The newest ``messageCnt`` messages (default 20, 1–100) between ``sender`` and ``receiver``
    dated before ``timeBoundary``, oldest first; the caller must be one of the two. To page back,
    send the oldest returned ``date`` as the next ``timeBoundary``."""
    sender = params.nickname("sender")
    receiver = params.nickname("receiver")
    # Any positive 64-bit value is a usable exclusive bound; clients pass a 16-digit KST date.
    boundary = params.required_integer("timeBoundary", minimum=1, maximum=MAX_TIME_BOUNDARY)
    count = params.integer(
        "messageCnt",
        required=False,
        minimum=1,
        maximum=MAX_MESSAGE_COUNT,
        default=DEFAULT_MESSAGE_COUNT,
    )
    assert count is not None
    own = _caller_nickname(res, user)
    if own not in (sender, receiver):
        raise Forbidden("the caller must be the sender or the receiver of the conversation")
    boundary = _committed_before(res, user.id, receiver if own == sender else sender, boundary)
    return _messages(res.messages.room_page(sender, receiver, before=boundary, limit=count))


def _committed_before(res: Resources, caller_id: int, other: str, boundary: int) -> int:
    """``boundary``, lowered to just past the room's latest message in the room list: a message whose
    SQL side never committed (its replica died between the two writes, ``api.dm_hub.store_message``)
    is not shown, so the history and the room list agree (no room row: nothing committed)."""
    with res.engine.connect() as conn:
        other_id = users.id_of(conn, other)
        last = dm_rooms.latest_date(conn, caller_id, other_id) if other_id is not None else None
    return min(boundary, last + 1) if last is not None else 0


@router.post("/findMultipleDirectMessage")
def find_multiple_direct_message(params: ParamsDep, user: CurrentUser, res: ResourcesDep) -> JSONResponse:
    """The last message (by ``date``, ties: the later stored) of each of the caller's conversations,
    newest first, at most ``storage.dm_rooms.ROOM_LIST_MAX``, from the room-list read model (one indexed
    query, however long the conversations); ``sender`` must be the caller."""
    sender = params.nickname("sender")
    if _caller_nickname(res, user) != sender:
        raise Forbidden("sender must be the caller's own nickname")
    with res.engine.connect() as conn:
        return _messages(dm_rooms.latest_rooms(conn, user.id))
