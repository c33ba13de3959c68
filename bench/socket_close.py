"""How fast a revoked login's DM sockets close on every replica (issue 13: "within 1 s").

    .venv/bin/python -m bench.socket_close [--reps 20]

For each repetition one seeded user opens a DM socket on each of the two API replicas with one login,
then that login ends through one replica, alternately A and B: ``signOut``, a refresh-token reuse
(``reIssueToken`` with a generation long rotated away), or ``resign`` (every login of the user; its
workflow start waits in the outbox, Temporal being absent). Measured on this process's clock: from the
API's response to the close frame (code 4401) on the replica that answered and on the other one; a
negative figure is a socket closed before the response arrived (the replica that revokes closes its
own sockets before it answers). Standalone, it starts ``bench.dm``'s stack; ``bench.dm`` runs it at its
end on its own stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts.tokens import ACCESS, REFRESH
from bench.cli import stop_on_sigterm
from bench.feed_seed import account, session_id
from bench.feed_seed import connect as db_connect

if TYPE_CHECKING:
    from bench.dm import Stack

KINDS = ("signOut", "refresh reuse", "resign")
TARGET_MS = 1000.0
#: Seeded logins are moved to this refresh generation, so generation 0 is a reuse.
GENERATION = 5


@dataclass
class Closes:
    """Milliseconds from the response to the close frame, on the answering replica and the other."""

    answering: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    codes: list[int | None] = field(default_factory=list)
    request_ms: list[float] = field(default_factory=list)


def users_needed(reps: int) -> int:
    """Seeded users the measurement consumes (one per repetition and kind)."""
    return reps * len(KINDS)


def prepare(db_url: str, users: list[int]) -> None:
    """Move the users' logins to ``GENERATION`` (so a refresh token of generation 0 is a reuse)."""
    if not users:  # ``--close-reps 0``: no socket-close run
        return
    conn = db_connect(db_url)
    try:
        with conn.cursor() as cur:
            marks = ", ".join(["%s"] * len(users))
            cur.execute(
                f"UPDATE login_sessions SET generation = %s WHERE user_id IN ({marks})", [GENERATION, *users]
            )
        conn.commit()
    finally:
        conn.close()


async def _closed_at(ws: ClientConnection) -> float:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass
    return time.perf_counter()


async def _one(stack: Stack, user: int, kind: str, via: str, other: str, closes: Closes) -> None:
    ends = [stack.api_end(user, replica) for replica in (via, other)]
    sockets = [
        await connect(e.url, additional_headers=e.headers, compression=None, open_timeout=30) for e in ends
    ]
    watchers = [asyncio.ensure_future(_closed_at(ws)) for ws in sockets]
    await asyncio.sleep(0.3)  # both sockets attached and bound to their login
    access = stack.issuer.issue(ACCESS, account(user), user, session_id(user), 0)
    headers = {"Authorization": f"Bearer {access}", "email": account(user)}
    if kind == "refresh reuse":
        stale = stack.issuer.issue(REFRESH, account(user), user, session_id(user), 0)
        path, headers = (
            "/auth-service/reIssueToken",
            {"authorization-refresh": f"Bearer {stale}", "email": account(user)},
        )
        expected = 403
    else:
        path, expected = "/auth-service/" + kind, 200
    data = {"email": account(user)} if kind == "resign" else None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.ports[via]}", timeout=30) as http:
        sent = time.perf_counter()
        response = await http.post(path, headers=headers, data=data)
        answered = time.perf_counter()
    if kind == "refresh reuse" and "already used" not in response.text:
        raise SystemExit(f"{kind} answered {response.status_code}: {response.text[:200]}")
    if response.status_code != expected:
        raise SystemExit(f"{kind} answered {response.status_code}: {response.text[:200]}")
    done, _ = await asyncio.wait(watchers, timeout=10)
    closes.request_ms.append(1000 * (answered - sent))
    for watcher, into, ws in zip(watchers, (closes.answering, closes.other), sockets, strict=True):
        into.append(1000 * (watcher.result() - answered) if watcher in done else math.inf)
        closes.codes.append(ws.close_code)
        watcher.cancel()
        await ws.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


async def measure(stack: Stack, users: list[int], reps: int, say: Callable[[str], None]) -> dict[str, Closes]:
    """``reps`` repetitions of each kind over ``users`` (``users_needed(reps)`` of them, prepared)."""
    found: dict[str, Closes] = {}
    pool = iter(users)
    for kind in KINDS:
        closes = found[kind] = Closes()
        for i in range(reps):
            via, other = ("api-a", "api-b") if i % 2 == 0 else ("api-b", "api-a")
            await _one(stack, next(pool), kind, via, other, closes)
        say(f"socket close after {kind}: {line(closes)}")
    return found


def line(c: Closes) -> str:
    """p50/p99/max of both sides against the target, and any close code that is not 4401."""
    worst = max(c.answering + c.other)
    bad = [code for code in c.codes if code != 4401]
    return (
        f"answering replica p50 {_pct(c.answering, 0.5):6.1f} ms p99 {_pct(c.answering, 0.99):6.1f} ms; "
        f"other replica p50 {_pct(c.other, 0.5):6.1f} ms p99 {_pct(c.other, 0.99):6.1f} ms; max {worst:.1f} ms "
        f"(target < {TARGET_MS:.0f} ms: {'met' if worst < TARGET_MS else 'NOT met'}); request p50 "
        f"{_pct(c.request_ms, 0.5):.1f} ms; {len(c.answering)} reps"
        + (f"; UNEXPECTED close codes {bad}" if bad else "")
    )


def main() -> None:
    """Start ``bench.dm``'s stack, seed, measure, print; everything is stopped at the end."""
    from bench import dm
    from bench.signin import say, throwaway_mysql
    from storage.db import migrate

    parser = argparse.ArgumentParser(prog="python -m bench.socket_close", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20, help="repetitions per kind (default 20)")
    args = parser.parse_args()
    stop_on_sigterm()
    stack_args = argparse.Namespace(retry_writes=False, fetch_wait_ms=20)
    work = Path(tempfile.mkdtemp(prefix="bench-close-"))
    db_url, drop_db = throwaway_mysql()
    procs: dict = {}
    try:
        migrate(db_url)
        users = list(range(1, users_needed(args.reps) + 1))
        dm.seed(db_url, len(users))
        prepare(db_url, users)
        stack = dm.start(work, db_url, stack_args, procs)
        asyncio.run(measure(stack, users, args.reps, say))
    finally:
        for proc in reversed(procs.values()):
            proc.stop()
        drop_db()


if __name__ == "__main__":
    main()
