"""The DM WebSocket ``/dm-service/connect-dm``: authenticated and authorised before the upgrade, then
handed to the replica's hub (``dm.hub``), which relays its frames; frames over the size or rate limits
(``api.dm_limits``) are refused before they are parsed, and the socket follows its login
(``api.dm_logins``)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from accounts.nicknames import nickname_key
from api.dm_limits import FrameGate
from api.errors import Forbidden
from api.resources import Resources, ServiceUnavailable
from api.security import authenticate_websocket
from api.shedding import Overloaded
from dm.hub import DirectMessageHub
from dm.sockets import Socket
from storage import users

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dm-service", tags=["dm"])
#: The close code of a socket the server is too busy to serve now (RFC 6455's registry).
TRY_AGAIN_LATER = 1013


@router.websocket("/connect-dm")
async def connect_dm(websocket: WebSocket) -> None:
    """Open the caller's DM socket (``nickname``, URL-decoded, must name the caller when given: read as
    its canonical nickname) and relay its frames until it closes; a refused handshake is answered 403
    before the upgrade; one that got no request thread in time, or of a user opening sockets too often
    (``api.dm_limits.ConnectGate``), is closed with 1013 once opened."""
    res: Resources = websocket.app.state.resources
    hub: DirectMessageHub = websocket.app.state.dm_hub
    try:
        user = await authenticate_websocket(websocket)

        def own_nickname() -> str | None:
            with res.engine.connect() as conn:
                return users.nickname_of(conn, user.id)

        nickname = await run_in_threadpool(own_nickname)
        wanted = websocket.query_params.get("nickname")
        if nickname is None or (wanted is not None and nickname_key(wanted) != nickname):
            raise Forbidden("nickname must be the caller's own nickname")
        # Counted once the socket would open (a refused handshake costs one read, no presence).
        too_often = websocket.app.state.dm_connects.refusal(user.id)
        if too_often is not None:
            await _try_again_later(websocket, too_often)
            return
    except Overloaded as busy:
        await _try_again_later(websocket, busy.message)  # no request thread within the wait
        return
    except (Forbidden, ServiceUnavailable) as exc:
        log.info("DM handshake refused: %s", exc)
        await websocket.close(code=1008, reason=str(exc)[:120])  # before accept: HTTP 403
        return
    await websocket.accept()
    sock = Socket(websocket, send_timeout=res.settings.dm_send_timeout_seconds, login=user)
    gate = FrameGate(res.settings, websocket.app.state.clock)
    await hub.relay(user.id, nickname, sock, gate)


async def _try_again_later(websocket: WebSocket, reason: str) -> None:
    """Close a handshake the server cannot serve now with 1013 "Try Again Later", WebSocket's own word
    for it. Accepted first: a denial response (503, 429) would do as well, but uvicorn's
    websockets-sansio logs an ERROR for every one (Kludex/uvicorn#3138)."""
    await websocket.accept()
    await websocket.close(code=TRY_AGAIN_LATER, reason=reason)
