"""Revision 0007 on a database that holds nicknames from before the rules: rewritten to their
canonical form where no other row has the key, collisions and invalid rows reported and left alone, and
the logged rename payload brings the DM history along through the README's runbook command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.deps import ActivityDeps
from config import Settings
from dm.messages import room_id
from storage.db import alembic_config, create_db_engine
from storage.models import User
from temporal.codec import ENCODING
from tests.fixtures.codec import CodecServer
from tests.fixtures.databases import scratch_mysql_database
from tests.storage.helpers import add_user, run_prestart
from tests.workflows.history_scan import find_secrets

ROOT = Path(__file__).resolve().parents[2]
TEMPORAL_CLI = Path(sys.executable).with_name("temporal")


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _hangul() -> str:
    return "마" + uuid.uuid4().hex[:6]


@pytest.fixture(params=["mysql", "sqlite"])
def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database migrated to revision 0004, the last one before nicknames were normalised."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'before.db'}"
        command.upgrade(alembic_config(url), "0004")
        yield url
        return
    with scratch_mysql_database("sosohappy_nick", revision="0004") as url:
        yield url


def _nicknames(engine: Engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return {user_id: nickname for user_id, nickname in conn.execute(select(User.id, User.nickname))}


def _migrate(url: str, mongo_url: str) -> list[dict[str, Any]]:
    """``python -m storage.migrate`` as the pre-start Job runs it (legacy messages in a database of its
    own); its JSON log lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOSOHAPPY_")}
    env |= {"SOSOHAPPY_ENV": "test", "SOSOHAPPY_DATABASE_URL": url}
    env |= {"SOSOHAPPY_MONGO_URL": mongo_url, "SOSOHAPPY_MONGO_DATABASE": f"dm_{uuid.uuid4().hex[:8]}"}
    proc = run_prestart(env)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stderr.splitlines()]


def test_stored_nicknames_are_normalised_where_no_other_row_has_the_key(at_0004: str, mongo_url: str) -> None:
    engine = create_db_engine(at_0004)
    try:
        fine, korean, padded = "s" + uuid.uuid4().hex[:8], _hangul(), "p" + uuid.uuid4().hex[:6]
        taken, shared = _hangul(), _hangul()
        ids = {
            "fine": add_user(engine, fine),
            "decomposed": add_user(engine, _nfd(korean)),
            "padded": add_user(engine, f"  {padded}"),
            "owner": add_user(engine, taken),  # holds the key its look-alike below would get
            "look-alike": add_user(engine, _nfd(taken)),
            "shared-a": add_user(engine, f" {_nfd(shared)}"),  # two rows, neither canonical
            "shared-b": add_user(engine, f"\t{_nfd(shared)}"),
            "zero-width": add_user(engine, "zw\u200bsp"),
            "placeholder": add_user(engine, str(uuid.uuid4())),
            "no profile": add_user(engine, None),
        }
        before = _nicknames(engine)

        lines = _migrate(at_0004, mongo_url)

        after = _nicknames(engine)
        assert after[ids["decomposed"]] == korean
        assert after[ids["padded"]] == padded
        unchanged = set(ids) - {"decomposed", "padded"}
        assert {name: after[ids[name]] for name in unchanged} == {
            name: before[ids[name]] for name in unchanged
        }
        assert after[ids["fine"]] == fine and after[ids["owner"]] == taken

        events: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            events.setdefault(line.get("event", ""), []).append(line)
        renames = {line["user_id"]: json.loads(line["rename"]) for line in events["nickname_normalised"]}
        assert renames == {
            ids["decomposed"]: {"user_id": ids["decomposed"], "old": _nfd(korean), "new": korean},
            ids["padded"]: {"user_id": ids["padded"], "old": f"  {padded}", "new": padded},
        }
        collisions = sorted((line["user_ids"], line["owner"]) for line in events["nickname_collision"])
        assert collisions == sorted(
            [
                ([ids["owner"], ids["look-alike"]], ids["owner"]),
                ([ids["shared-a"], ids["shared-b"]], None),
            ]
        )
        invalid = {line["user_id"]: line["msg"] for line in events["nickname_invalid"]}
        assert set(invalid) == {ids["zero-width"], ids["placeholder"]}
        assert "U+200B" in invalid[ids["zero-width"]]
        assert invalid[ids["zero-width"]].endswith("left unchanged")
        assert events["nicknames_normalised"][0]["renamed"] == 2
        # The decomposed form is shown escaped, so it reads differently from the composed one.
        [decomposed_line] = [
            line for line in events["nickname_normalised"] if line["user_id"] == ids["decomposed"]
        ]
        assert "\\u1106\\u1161" in decomposed_line["msg"] and korean[1:] in decomposed_line["msg"]

        # At head, migrating again changes nothing.
        assert not any(line.get("event") == "nickname_normalised" for line in _migrate(at_0004, mongo_url))
        assert _nicknames(engine) == after
    finally:
        engine.dispose()


@pytest.mark.usefixtures("worker")
def test_the_logged_rename_brings_the_dm_history_along(
    settings: Settings, activity_deps: ActivityDeps, codec_server: CodecServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    command.upgrade(alembic_config(url), "0004")
    engine = create_db_engine(url)
    try:
        korean, friend = _hangul(), "f" + uuid.uuid4().hex[:8]
        user_id = add_user(engine, _nfd(korean))
        add_user(engine, friend)
        # Stored by the nickname-keyed releases, under the decomposed spelling.
        collection = activity_deps.mongo[activity_deps.settings.mongo_database]["message"]
        for sender, receiver, text in (
            (_nfd(korean), friend, "before the rules"),
            (friend, _nfd(korean), "reply"),
        ):
            collection.insert_one(
                {
                    "messageRoomId": room_id(sender, receiver),
                    "sender": sender,
                    "receiver": receiver,
                    "date": 1,
                    "text": text,
                }
            )
        [line] = [
            line for line in _migrate(url, settings.mongo_url) if line.get("event") == "nickname_normalised"
        ]
        assert line["user_id"] == user_id
    finally:
        engine.dispose()

    # The README's runbook command, with the line's rename payload, encrypted through the codec server.
    started = subprocess.run(
        [
            str(TEMPORAL_CLI),
            "workflow",
            "signal-with-start",
            "--address",
            settings.temporal_address,
            "--namespace",
            settings.temporal_namespace,
            "--workflow-id",
            f"nickname-change:{user_id}",
            "--type",
            "NicknameChangeWorkflow",
            "--task-queue",
            "sosohappy-accounts",
            "--signal-name",
            "rename",
            "--signal-input",
            line["rename"],
            "--search-attribute",
            f'SosoUserId="{user_id}"',
            "--search-attribute",
            'SosoKind="nickname-change"',
            "--codec-endpoint",
            codec_server.url,
            "--codec-auth",
            f"Bearer {codec_server.token}",
            "--output",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    run_id = json.loads(started.stdout)["runId"]

    # The legacy messages under the decomposed spelling are pinned to the user the line names.
    def pinned() -> list[str]:
        mine = {
            "$or": [
                {"sender": _nfd(korean), "senderId": user_id},
                {"receiver": _nfd(korean), "receiverId": user_id},
            ]
        }
        return sorted(doc["text"] for doc in collection.find(mine))

    deadline = time.monotonic() + 60
    while pinned() != ["before the rules", "reply"]:
        assert time.monotonic() < deadline, "the rename never reached the messages"
        time.sleep(0.2)

    # The signal (user id, old and new nickname) is in the history as ciphertext only.
    [signal] = asyncio.run(_signals(settings, f"nickname-change:{user_id}", run_id))
    [payload] = signal.workflow_execution_signaled_event_attributes.input.payloads
    assert payload.metadata["encoding"] == ENCODING
    assert find_secrets([signal], [korean, _nfd(korean), line["rename"]]) == []


async def _signals(settings: Settings, workflow_id: str, run_id: str) -> list[Any]:
    """The signal events of a run, as a client without the payload codec reads them."""
    plain = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
    history = await plain.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
