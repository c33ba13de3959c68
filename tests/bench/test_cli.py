"""The benchmarks' command lines: every ``python -m bench.<module>`` parses its options before it starts
anything (``--help`` prints usage and exits 0, an unknown option exits 2), and a run ended by SIGTERM
stops the processes it started (``bench.cli.stop_on_sigterm``). No server is started here."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

#: Options a module requires, given when checking that an unknown one is refused.
REQUIRED = {"dm_relay": ["--port", "1"]}


def _entry_points() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def _readme_benchmarks() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"\bbench\.([a-z_]+)", section))


MODULES = _entry_points()


def _documented_options(module: str) -> set[str]:
    """The ``--options`` the module's docstring (and its ``main``'s) name."""
    tree = ast.parse((BENCH / f"{module}.py").read_text())
    docs = [ast.get_docstring(tree) or ""]
    docs += [
        ast.get_docstring(node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "main"
    ]
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", "\n".join(docs)))


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench.<module> args``; a module that starts its benchmark instead of answering within
    the timeout is stopped with SIGTERM (so it stops what it started) and fails the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"bench.{module} {' '.join(args)} did not exit at once (started the run?):\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_every_benchmark_in_the_readme_has_an_entry_point() -> None:
    listed = _readme_benchmarks()
    assert {"push", "signin", "devserver", "feed", "paging", "dm", "request_log", "images"} <= listed
    assert listed <= set(MODULES), f"listed in the README without a __main__: {listed - set(MODULES)}"


@pytest.mark.parametrize("module", MODULES)
def test_help_prints_usage_with_the_documented_options(module: str) -> None:
    result = _run(module, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m bench.{module}"), result.stdout[:200]
    usage = result.stdout.split("\n\n", 1)[0]
    missing = {opt for opt in _documented_options(module) if opt not in usage}
    assert not missing, f"bench.{module}'s docstring names options its parser lacks: {missing}\n{usage}"


@pytest.mark.parametrize("module", MODULES)
def test_an_unknown_option_exits_2_with_a_message(module: str) -> None:
    result = _run(module, *REQUIRED.get(module, []), "--no-such-option")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "unrecognized arguments: --no-such-option" in result.stderr
    assert result.stdout == ""


SIGTERMED_RUN = """
import asyncio, sys, time
from pathlib import Path
from bench.cli import stop_on_sigterm
from devstack.processes import ManagedProcess

stop_on_sigterm()
child = ManagedProcess("sleeper", ["sleep", "600"], Path(sys.argv[1])).start()
try:
    print(child.proc.pid, flush=True)
    {wait}
finally:
    child.stop()
    print("stopped", flush=True)
"""


@pytest.mark.parametrize("wait", ["time.sleep(600)", "asyncio.run(asyncio.sleep(600))"])
def test_sigterm_runs_the_cleanup_that_stops_what_the_run_started(wait: str, tmp_path: Path) -> None:
    code = textwrap.dedent(SIGTERMED_RUN).replace("{wait}", wait)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "sleeper.log")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert out.strip() == "stopped", err
        assert "KeyboardInterrupt: SIGTERM" in err
        assert proc.returncode != 0
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_if_still_the_sleeper(child)


def _kill_if_still_the_sleeper(pid: int) -> None:
    """After a failure: the sleeper this test started, if it outlived its parent (and only it)."""
    try:
        if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00":
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
