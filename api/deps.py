"""FastAPI dependencies as ``Annotated`` aliases: the process resources and a DB session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

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


def get_settings(res: ResourcesDep) -> Settings:
    """The process settings."""
    return res.settings


def get_session(res: ResourcesDep) -> Iterator[Session]:
    """A SQLAlchemy session for one request, closed afterwards (commit is the route's job)."""
    with res.sessions() as session:
        yield session


def get_temporal(res: ResourcesDep) -> Client:
    """The Temporal client (503 while Temporal is unreachable)."""
    return res.temporal


def get_messages(res: ResourcesDep) -> MessageStore:
    """The MongoDB message store."""
    return res.messages


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
MessagesDep = Annotated[MessageStore, Depends(get_messages)]
