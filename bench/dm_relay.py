"""The baseline of ``bench.dm``: a minimal WebSocket relay, no storage, no auth, permessage-deflate off.

    .venv/bin/python -m bench.dm_relay --port 9001 [--peer ws://127.0.0.1:9002/peer]

Clients connect to ``/?nickname=<nick>`` and send ``{"receiver": ..., ...}`` JSON text frames; each frame
goes unchanged to the receiver's sockets in this process. With ``--peer`` (another relay), frames for a
receiver with no socket here are forwarded over one WebSocket to the peer's ``/peer`` path, which
delivers them to its own sockets: the cross-process hop of the benchmark's cross-replica baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class Relay:
    """The sockets of this process by nickname, and the link to the peer relay if any."""

    def __init__(self, peer_url: str | None) -> None:
        self.sockets: dict[str, set[ServerConnection]] = {}
        self.peer_url = peer_url
        self.peer: ClientConnection | None = None

    async def deliver_local(self, receiver: str, frame: str) -> int:
        """Send ``frame`` to every socket of ``receiver`` here; how many there were."""
        targets = list(self.sockets.get(receiver, ()))
        for ws in targets:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(frame)
        return len(targets)

    async def route(self, frame: str) -> None:
        """Deliver one client frame here, else forward it to the peer."""
        try:
            receiver = json.loads(frame)["receiver"]
        except (ValueError, KeyError, TypeError):
            return
        if not await self.deliver_local(str(receiver), frame) and self.peer is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.peer.send(frame)

    async def handler(self, ws: ServerConnection) -> None:
        """A client socket (``/?nickname=``) or the peer's link (``/peer``)."""
        target = urlsplit(ws.request.path if ws.request else "/")
        if target.path == "/peer":
            async for frame in ws:
                receiver = json.loads(frame)["receiver"]
                await self.deliver_local(str(receiver), str(frame))
            return
        nickname = parse_qs(target.query).get("nickname", [""])[0]
        self.sockets.setdefault(nickname, set()).add(ws)
        try:
            async for frame in ws:
                await self.route(str(frame))
        finally:
            self.sockets[nickname].discard(ws)

    async def link(self) -> None:
        """Keep a connection to the peer relay open (retrying while it starts)."""
        assert self.peer_url is not None
        while True:
            try:
                async with connect(self.peer_url, compression=None) as peer:
                    self.peer = peer
                    await peer.wait_closed()
            except OSError:
                pass
            self.peer = None
            await asyncio.sleep(0.1)


async def run(port: int, peer_url: str | None) -> None:
    """Serve until killed."""
    relay = Relay(peer_url)
    linking = asyncio.ensure_future(relay.link()) if peer_url else None
    async with serve(relay.handler, "127.0.0.1", port, compression=None) as server:
        await server.serve_forever()
    if linking is not None:
        linking.cancel()


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.dm_relay", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peer", help="ws:// URL of the other relay's /peer path")
    args = parser.parse_args()
    asyncio.run(run(args.port, args.peer))


if __name__ == "__main__":
    main()
