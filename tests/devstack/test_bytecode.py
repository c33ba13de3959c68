"""``devstack.bytecode``: every package's modules get a ``.pyc`` even where nothing else writes one, so
the workflow sandbox's per-run re-import reads bytecode instead of compiling the source again."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from devstack import bytecode


def test_every_package_is_compiled_and_a_broken_module_is_reported(tmp_path: Path) -> None:
    for package in bytecode.PACKAGES[:2]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "module.py").write_text("VALUE = 1\n")
    first = tmp_path / bytecode.PACKAGES[0] / "module.py"
    assert bytecode.compile_project(tmp_path)
    assert Path(importlib.util.cache_from_source(str(first))).is_file()
    (tmp_path / bytecode.PACKAGES[1] / "broken.py").write_text("def (:\n")
    assert not bytecode.compile_project(tmp_path)


def test_the_packages_are_the_projects_and_the_command_writes_bytecode_under_dontwritebytecode() -> None:
    assert {"workflows", "activities", "temporal", "api", "workers"} <= set(bytecode.PACKAGES)
    push = bytecode.ROOT / "workflows" / "push.py"
    cached = Path(importlib.util.cache_from_source(str(push)))
    cached.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "devstack.bytecode"],
        cwd=bytecode.ROOT,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "compiling" in done.stdout
    assert cached.is_file()
