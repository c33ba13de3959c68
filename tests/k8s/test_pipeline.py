"""The delivery pipeline (``.github/workflows/delivery.yml``): it validates against GitHub's schema, runs the
Jenkins stages in order, each stage does what its name says, and its scripts pass shellcheck."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s import ROOT
from tests.k8s.tools import require_tool

WORKFLOW = ROOT / ".github" / "workflows" / "delivery.yml"
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
        [require_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
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

    assert "make install-dev" in _runs(jobs["build"]) and "make lint" in _runs(jobs["build"])

    test = jobs["test"]
    assert "make test" in _runs(test)
    (service,) = test["services"].values()
    assert service["image"].startswith(("mariadb:", "mysql:"))
    assert "3306:3306" in service["ports"]
    assert test["env"]["SOSOHAPPY_TEST_DATABASE_URL"].startswith("mysql+pymysql://root@127.0.0.1:3306")
    # make install-dev installs kubectl and check-jsonschema from requirements-dev.lock: no job needs Node;
    # the test job installs promtool so that no monitoring check is skipped
    for name in PIPELINE_JOBS:
        assert not any(u.startswith("actions/setup-node@") for u in _uses(jobs[name])), name
    assert "apt-get install -y -qq --no-install-recommends prometheus" in _runs(test)

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
    # Readiness of every API pod from inside it (the Ingress routes no /readyz, and the API's NetworkPolicy
    # admits its port only from the ingress controller, so the API server's proxy would be refused); the
    # Ingress checked from outside: a client path reaches the API, the API's own paths do not.
    readyz = next(s for s in deploy["steps"] if "/readyz" in s.get("name", ""))
    assert 'exec "$pod" -c api -- python -c "$READYZ"' in readyz["run"]
    assert "app.kubernetes.io/component=api" in readyz["run"]
    assert "127.0.0.1" in readyz["env"]["READYZ"] and "/readyz" in readyz["env"]["READYZ"]
    assert "/proxy/" not in _runs(deploy)
    rollout = _runs(jobs["rollout"])
    assert "$URL/feed-service/findOtherFeed" in rollout and "x-request-id" in rollout
    assert "for path in /readyz /healthz /metrics /docs /openapi.json" in rollout
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
            [require_tool("shellcheck"), "--shell=bash", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{where}\n{proc.stdout}"


def test_nothing_installs_or_runs_node() -> None:
    """The checks need Python tools only: no npm step in the Makefile or .ci/run, no package.json to install,
    and the Strimzi schemas the k8s checks use are in the repository."""
    for script in (ROOT / "Makefile", ROOT / ".ci" / "run"):
        assert not re.search(r"\b(npm|npx|node)\b", script.read_text(encoding="utf-8")), script.name
    assert not (ROOT / "package.json").exists() and not list((ROOT / "k8s").rglob("package*.json"))
    assert sorted(
        p.name for p in (ROOT / "k8s" / "schemas" / "strimzi" / "kafka.strimzi.io" / "v1").iterdir()
    ) == [
        "kafka.json",
        "kafkanodepool.json",
        "kafkatopic.json",
    ]
