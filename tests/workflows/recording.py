"""Recording workflow histories for the replay tests (``tests/workflows/histories``).

A test that runs a flow on the real dev server calls ``record_if_asked`` with the flow's handle; with
``SOSOHAPPY_RECORD_HISTORIES=1`` in the environment the history is written as ``histories/<name>.json``
(the JSON form the Web UI and ``temporal workflow show --output json`` produce), otherwise nothing
happens. Recorded files are checked in and replayed by ``test_replay.py`` against every later version.
Payloads are written decrypted, so the files replay under any key, as the ones recorded before payload
encryption do (``test_replay.py`` replays them with ``accept_plain``: workers refuse plain payloads).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

from config import Settings
from temporal.codec import ENCODING, encryption_codec
from tests.workflows.history_scan import payloads_in

HISTORIES = Path(__file__).with_name("histories")
RECORD_ENV = "SOSOHAPPY_RECORD_HISTORIES"


async def record_if_asked(handle: WorkflowHandle[Any, Any], name: str) -> Path | None:
    """Write the finished workflow's history as ``histories/<name>.json`` when recording is asked for."""
    if os.environ.get(RECORD_ENV) != "1":
        return None
    history = await handle.fetch_history()
    codec = encryption_codec(Settings(env="test"))
    for event in history.events:
        for payload in payloads_in(event):
            if payload.metadata.get("encoding") == ENCODING:
                (plain,) = await codec.decode([payload])
                payload.CopyFrom(plain)
    path = HISTORIES / f"{name}.json"
    path.write_text(json.dumps(history.to_json_dict(), indent=1, ensure_ascii=False) + "\n")
    return path
