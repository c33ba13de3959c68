"""Routes under ``/dm-service``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/dm-service", tags=["dm"])
