"""The bare endpoint of ``bench.feed``: the feed listings' main SQL query on the API's engine, nothing else.

A plain ASGI app (no FastAPI, no authentication, no response shaping) served by the same uvicorn
command as the API. Each request opens ``engine.connect()`` like the routes do, runs the statement of
``storage.feeds.month_query`` or ``storage.feeds.public_page_query`` (the feeds with their child rows
aggregated per row, exactly what the API runs) and answers the rows as a JSON array of arrays. The blocking
call runs either directly on the event loop (``/inline/...``) or in anyio's worker threads, as
Starlette runs sync routes (``/thread/...``); the benchmark measures both and keeps the faster.

    GET /{inline,thread}/month?nickname=u000001&date=2025030100000000
    GET /{inline,thread}/other?viewer=1&page=0&size=21[&day=20250301]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from anyio import to_thread

from config import Settings
from feeds.paging import Seek
from storage import feeds
from storage.db import create_db_engine

engine = create_db_engine(Settings(env="test").sqlalchemy_url)


def month(params: dict[str, str]) -> bytes:
    """The rows of ``month_query(nickname, date)``."""
    with engine.connect() as conn:
        rows = [
            list(row)
            for row in conn.execute(*feeds.month_query(conn, params["nickname"], int(params["date"])))
        ]
    return json.dumps(rows, ensure_ascii=False).encode()


def other(params: dict[str, str]) -> bytes:
    """The rows of ``public_page_query(viewer, day, size)`` for page ``page`` counted from the top (as the
    API reads a page no mark of the caller's reaches, ``feeds.paging``)."""
    day = int(params["day"]) if params.get("day") else None
    viewer, page, size = int(params["viewer"]), int(params["page"]), int(params["size"])
    seek = Seek(None, page)
    with engine.connect() as conn:
        rows = [list(row) for row in conn.execute(*feeds.public_page_query(conn, viewer, day, size, seek))]
    return json.dumps(rows, ensure_ascii=False).encode()


HANDLERS: dict[str, Callable[[dict[str, str]], bytes]] = {"month": month, "other": other}


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Route ``/{inline,thread}/{month,other}``; 404 for anything else."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    _, mode, name = [*scope["path"].split("/"), "", ""][:3]
    handler = HANDLERS.get(name)
    status, body = 404, b'{"error": "not found"}'
    if handler is not None and mode in ("inline", "thread"):
        params = dict(parse_qsl(scope["query_string"].decode()))
        body = handler(params) if mode == "inline" else await to_thread.run_sync(handler, params)
        status = 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
