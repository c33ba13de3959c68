"""``k8s/deploy.sh``: it runs the migration Job before it applies the overlay, waits for the rollout, undoes a
failed one, and refuses bad arguments before it touches the cluster.

The script runs against a fake ``kubectl`` that logs every call, answers the Job and Deployment queries from
a scripted state, and renders with the real ``kubectl kustomize``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.manifests import (
    APP_IMAGE,
    K8S,
    NAMESPACE,
    OVERLAYS,
    SIZES,
    Doc,
    backend_containers,
    pod_spec,
)
from tests.k8s.tools import require_tool

DEPLOY = K8S / "deploy.sh"
MIGRATE_JOB = "sosohappy-migrate"
DEPLOYMENTS = ("sosohappy-api", "sosohappy-worker", "sosohappy-codec")


def test_deploy_script_passes_shellcheck() -> None:
    proc = subprocess.run(
        [require_tool("shellcheck"), str(DEPLOY)], capture_output=True, text=True, timeout=60
    )
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
    real_kubectl = require_tool("kubectl")
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
            "POLL_SECONDS": "0.01",
            **env_overrides,
        }
        before = _tree_digest(OVERLAYS)
        proc = subprocess.run(
            ["bash", str(DEPLOY), *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
        )
        assert _tree_digest(OVERLAYS) == before, "deploy.sh edited the overlays"
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


def _images(docs: list[Doc]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for obj in docs:
        pod = pod_spec(obj)
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
        for workload, container in backend_containers(docs):
            assert container["image"] == image, (workload, container["image"])
    images = _images(migrate_docs + app_docs)
    for workload in (MIGRATE_JOB, *DEPLOYMENTS):
        assert image in images[workload], (workload, images[workload])
    for workload, found in images.items():
        assert APP_IMAGE not in found and f"{APP_IMAGE}:latest" not in found, workload
    assert re.search(rf"image: {APP_IMAGE}\b", run.applied[0] + run.applied[1]) is None

    # order: delete old Job < apply Job < polls until Complete < apply overlay < rollout status of each Deployment
    delete_job = run.index(lambda c: c[:3] == ["delete", "job", MIGRATE_JOB])
    applies = run.all(_is_apply)
    polls = run.all(_is_job_poll)
    statuses = run.all(_is_rollout_status)
    assert delete_job < applies[0] < polls[0]
    assert len(polls) == 3, "the Job is polled until it reports Complete"
    assert polls[-1] < applies[1], "the overlay is applied only after the migration Job completed"
    assert len(statuses) == len(DEPLOYMENTS) and applies[1] < min(statuses)
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
        for _, container in backend_containers([d for d in yaml.safe_load_all(docs) if d]):
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
        POLL_SECONDS="0.3",
    )
    assert run.returncode != 0
    assert len(run.applied) == 1
    # The budget is counted in polls (ceil(1 / 0.3) = 4), not read off a clock: the same on a loaded machine.
    assert len(run.all(_is_job_poll)) == 4
    assert "did not finish within 1s (4 polls 0.3s apart)" in run.stderr


@pytest.mark.parametrize("env", [{"POLL_SECONDS": "0"}, {"POLL_SECONDS": "x"}, {"MIGRATE_TIMEOUT": "-1"}])
def test_bad_poll_settings_are_refused_before_touching_the_cluster(deploy: Any, env: dict[str, str]) -> None:
    run = deploy("small", "ghcr.io/o/sosohappy-backend", "deadbeef", **env)
    assert run.returncode != 0
    assert run.calls == []


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
    assert len(undos) == len(DEPLOYMENTS) and min(undos) > app_apply
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
