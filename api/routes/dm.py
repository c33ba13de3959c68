"""Routes under ``/dm-service``: direct-message history (BACKEND_SPEC §9.1).

Identity comes from the token: the caller must hold one of the room's two nicknames (findDirectMessage)
or the ``sender`` whose rooms are listed (findMultipleDirectMessage), else 403 — the original let
anyone read any room (§14.2). ``sender`` and ``receiver`` are read as canonical nicknames
(``Params.nickname``: NFC, trimmed; 400 when invalid) and name the users who hold them *now*; messages
are found by those users' ids and shown with their current nicknames (``dm.conversations``), so a
nickname's next owner sees nothing of the previous one's. Both run in the threadpool (sync endpoints).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from api.deps import ResourcesDep
from api.errors import NotTheCaller, error_responses
from api.forms import DirectMessageForm, RoomListForm
from api.params import ClientRoute
from api.security import CurrentUser
from dm import conversations
from dm.conversations import NoNickname, NotAParticipant
from dm.messages import MessageDto

router = APIRouter(
    prefix="/dm-service", tags=["dm"], route_class=ClientRoute, responses=error_responses(400, 403, 503)
)
Multipart = Form(media_type="multipart/form-data")

NO_NICKNAME = "set a nickname before reading direct messages"


@router.post("/findDirectMessage")
def find_direct_message(
    form: Annotated[DirectMessageForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> list[MessageDto]:
    """The newest ``messageCnt`` messages (default 20, 1–100) between ``sender`` and ``receiver``
    dated before ``timeBoundary``, oldest first; the caller must be one of the two. To page back,
    send the oldest returned ``date`` as the next ``timeBoundary``."""
    sender, receiver = form.sender, form.receiver
    # Any positive 64-bit value is a usable exclusive bound; clients pass a 16-digit KST date.
    boundary, count = form.time_boundary, form.message_cnt
    try:
        with res.engine.connect() as conn:
            room = conversations.room_of(conn, user.id, sender, receiver)
            # Never past the room row's latest message: one whose SQL side never committed is not shown.
            boundary = conversations.committed_before(conn, room, boundary)
    except NoNickname:
        raise NotTheCaller(NO_NICKNAME) from None
    except NotAParticipant:
        raise NotTheCaller("the caller must be the sender or the receiver of the conversation") from None
    return conversations.page(res.messages, room, before=boundary, limit=count)


@router.post("/findMultipleDirectMessage")
def find_multiple_direct_message(
    form: Annotated[RoomListForm, Multipart], user: CurrentUser, res: ResourcesDep
) -> list[MessageDto]:
    """The last message (by ``date``, ties: the later stored) of each of the caller's conversations,
    newest first, at most ``dm.rooms.ROOM_LIST_MAX``, from the room-list read model (one indexed
    query, however long the conversations); ``sender`` must be the caller."""
    sender = form.sender
    try:
        with res.engine.connect() as conn:
            return conversations.room_list(conn, user.id, sender)
    except NoNickname:
        raise NotTheCaller(NO_NICKNAME) from None
    except NotAParticipant:
        raise NotTheCaller("sender must be the caller's own nickname") from None
