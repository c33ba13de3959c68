"""``python -m devstack.bytecode``: the project's modules compiled to bytecode on disk, whatever
``PYTHONDONTWRITEBYTECODE`` says.

Temporal's workflow sandbox imports a workflow's module, and whatever it imports that is not passed
through, afresh for every workflow run. With a ``.pyc`` beside the source that is a read and an exec;
without one (these machines set ``PYTHONDONTWRITEBYTECODE=1``, so nothing is ever cached) the source is
compiled again for every run: 9.6% of the worker's CPU in ``bench.push`` (py-spy, GIL samples). The
container image has bytecode already (pip compiles the wheel when the builder installs it), so this is
for the checkout: ``make run`` and ``make test`` call it, and so do the benchmarks that host workers.
Only changed files are compiled again, so a second call costs a directory walk.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The project's packages (every top-level folder with an ``__init__.py``, tests and bench included).
PACKAGES = tuple(sorted(p.parent.name for p in ROOT.glob("*/__init__.py")))


def compile_project(root: Path = ROOT) -> bool:
    """Write the missing or stale ``.pyc`` files of every package under ``root``; False when a module
    does not compile (its error is printed, as the import would raise it)."""
    return all(compileall.compile_dir(root / name, quiet=1) for name in PACKAGES)


def main() -> None:
    """Compile, saying what; exit 1 when a module does not compile."""
    print(f"==> compiling {len(PACKAGES)} packages to bytecode (the workflow sandbox re-imports per run)")
    raise SystemExit(0 if compile_project() else 1)


if __name__ == "__main__":
    main()
