"""A codec server over real HTTP for the session (the session's payload key, a generated token)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from config import Settings
from temporal.codec_server import create_app
from tests.fixtures.asgi import serve_in_thread

UI_ORIGIN = "http://127.0.0.1:18233"


@dataclass(frozen=True)
class CodecServer:
    """Where the codec server listens and the token it wants."""

    url: str
    token: str
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        """The header the CLI's ``--codec-auth`` sends."""
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def codec_server() -> Iterator[CodecServer]:
    """The codec server as ``make run`` configures it (the UI may decode from loopback without token)."""
    token = secrets.token_urlsafe(32)
    settings = Settings(
        env="test",
        codec_server_token=token,  # type: ignore[arg-type]
        codec_server_ui_origin=UI_ORIGIN,
        codec_server_ui_without_token=True,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield CodecServer(url, token, settings)
