"""FastAPI dependencies as ``Annotated`` aliases: the process resources and a DB session per request.

Each is async: FastAPI runs a sync dependency on a request thread, and a request's first thread is the
one it may be shed for want of (``api.shedding``); a lookup taking it would leave the route's real
work waiting for a second one without a deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from anyio import CancelScope, CapacityLimiter, to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session
from temporalio.client import Client

from api.resources import Resources
from config import Settings
from dm.messages import MessageStore


async def get_resources(request: Request) -> Resources:
    """The process's clients, created in the lifespan (async: no threadpool hop for a lookup)."""
    return request.app.state.resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_settings(res: ResourcesDep) -> Settings:
    """The process settings."""
    return res.settings


async def get_session(res: ResourcesDep) -> AsyncIterator[Session]:
    """A SQLAlchemy session for one request, closed afterwards (commit is the route's job). Opened on
    the event loop (it connects on first use, in the route's thread); closed in a thread outside the
    request threads' limit, as FastAPI closes a sync dependency: giving its connection back never
    waits for a thread held by a request that waits for a connection."""
    session = res.sessions()
    try:
        yield session
    finally:
        with CancelScope(shield=True):
            await to_thread.run_sync(session.close, limiter=CapacityLimiter(1))


async def get_temporal(res: ResourcesDep) -> Client:
    """The Temporal client (503 while Temporal is unreachable)."""
    return res.temporal


async def get_messages(res: ResourcesDep) -> MessageStore:
    """The MongoDB message store."""
    return res.messages


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
MessagesDep = Annotated[MessageStore, Depends(get_messages)]
