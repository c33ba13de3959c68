"""What a resign start carries: the user id and provider only, also for rows an older API queued with
the e-mail, nickname and Apple refresh token in them (issue 14)."""

from __future__ import annotations

from typing import Any, cast

from temporalio.client import Client

from api.outbox import STARTERS
from temporal.accounts import ResignInput


class RecordingClient:
    """Stands in for the Temporal client: keeps what ``start_workflow`` was asked."""

    def __init__(self) -> None:
        self.starts: list[tuple[Any, ...]] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append((*args, kwargs))


async def test_a_resign_queued_by_an_older_api_starts_with_ids_only() -> None:
    legacy = ResignInput(
        user_id=41,
        provider="apple",
        account_email="leaving@icloud.com+apple",
        nickname="leaving",
        apple_refresh_token="r.secret-apple-refresh-token",
    ).model_dump_json()
    client = RecordingClient()
    await STARTERS["resign"](cast(Client, client), legacy)
    [(_run, arg, options)] = client.starts
    assert arg == ResignInput(user_id=41, provider="apple")
    assert "secret" not in arg.model_dump_json() and "leaving" not in arg.model_dump_json()
    assert options["id"] == "resign:41"
