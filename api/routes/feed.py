"""Routes under ``/feed-service``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/feed-service", tags=["feed"])
