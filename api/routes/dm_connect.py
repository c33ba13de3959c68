"""The DM WebSocket ``/dm-service/connect-dm``: authenticated before the upgrade, frames as the original
server took them, errors answered in an error frame on a socket that stays open; frames over the size
or rate limits (``api.dm_limits``) are refused before they are parsed."""

from __future__ import annotations

import logging

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from accounts.nicknames import nickname_key
from api.dm_hub import REFUSED, DirectMessageHub, FrameRefused, Socket, error_frame
from api.dm_limits import FrameGate
from api.errors import Forbidden
from api.resources import Resources, ServiceUnavailable
from api.security import authenticate_websocket
from storage import users

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dm-service", tags=["dm"])


@router.websocket("/connect-dm")
async def connect_dm(websocket: WebSocket) -> None:
    """Open the caller's DM socket (``nickname``, URL-decoded, must name the caller when given: read as
    its canonical nickname) and relay its frames until it closes; a refused handshake is answered 403
    before the upgrade."""
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
    except (Forbidden, ServiceUnavailable) as exc:
        log.info("DM handshake refused: %s", exc)
        await websocket.close(code=1008, reason=str(exc)[:120])  # before accept: HTTP 403
        return
    await websocket.accept()
    sock = Socket(websocket, send_timeout=res.settings.dm_send_timeout_seconds, login=user)
    gate = FrameGate(res.settings, websocket.app.state.clock)
    await hub.attach(user.id, sock)
    try:
        while True:
            message = await sock.receive()
            if message["type"] == "websocket.disconnect":
                break
            refusal = gate.admit(message)  # size and rate, before anything is parsed
            if refusal is not None:
                REFUSED.labels(refusal.code).inc()
                if refusal.close is not None:
                    sock.close(*refusal.close)
                else:
                    await sock.send(error_frame(refusal.reason, message.get("text") or ""))
                continue
            try:
                admitted = await hub.logins.admits(sock)
            except Exception:  # the database had to say and could not: refuse this frame only
                log.warning("DM login of user %s not checked", user.id, exc_info=True)
                REFUSED.labels("unavailable").inc()
                await sock.send(
                    error_frame("the message could not be stored; try again", message.get("text") or "")
                )
                continue
            if not admitted:  # login revoked or token expired: the socket is closed, the frame dropped
                REFUSED.labels("login_ended").inc()
                break
            raw = message.get("text")
            if raw is None:
                REFUSED.labels("binary").inc()
                await sock.send(error_frame("frames must be text (JSON)", ""))
                continue
            try:
                await hub.handle(user.id, nickname, raw)
            except FrameRefused as refused:
                REFUSED.labels(refused.code).inc()
                await sock.send(error_frame(refused.reason, raw))
            except Exception:
                log.exception("DM from user %s failed", user.id)
                REFUSED.labels("unavailable").inc()
                await sock.send(error_frame("the message could not be stored; try again", raw))
    finally:
        try:
            await hub.detach(user.id, sock)
        finally:
            await sock.finish()
