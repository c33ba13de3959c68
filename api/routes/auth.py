"""Routes under ``/auth-service``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/auth-service", tags=["auth"])
