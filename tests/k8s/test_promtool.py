"""``promtool`` on the monitoring files: the rules load and their unit tests fire the alerts, the config as
deployed is valid, and its relabelling turns the pods the ``k8s/base`` manifests describe into the three
scrape jobs the rules and dashboards read.

Debian's promtool is built without Kubernetes service discovery. Where it cannot read the config as
deployed, and to feed pods to the relabelling, the checks use a copy whose ``kubernetes_sd_configs`` blocks
are ``file_sd_configs`` blocks, everything else (the relabelling included) unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.manifests import K8S, OVERLAYS, render
from tests.k8s.monitoring import PROMETHEUS, RULE_FILES
from tests.k8s.tools import tool_or_skip

#: What promtool says about a config with Kubernetes discovery when it is built without it.
NO_KUBERNETES_SD = "field kubernetes_sd_configs not found"


def _promtool() -> str:
    return tool_or_skip("promtool", "Debian/Ubuntu: apt-get install prometheus")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=60)


def _write_file_sd_copy(
    directory: Path, targets: Mapping[str, list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    """Write ``prometheus.yml`` and its rules into ``directory``, every ``kubernetes_sd_configs`` block
    replaced by ``file_sd_configs`` reading ``<job_name>.json``, which lists ``targets[job_name]`` (target
    groups as Kubernetes pod discovery would yield them; none by default). Everything else, the
    relabelling included, is as deployed. Returns the Kubernetes discovery blocks replaced, per job."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    replaced = {}
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" not in job:
            continue
        name = job["job_name"]
        replaced[name] = job.pop("kubernetes_sd_configs")
        (directory / f"{name}.json").write_text(json.dumps((targets or {}).get(name, [])))
        job["file_sd_configs"] = [{"files": [f"{name}.json"]}]
    shutil.copytree(PROMETHEUS / "rules", directory / "rules")
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    return replaced


def test_promtool_checks_the_rules() -> None:
    result = _run(_promtool(), "check", "rules", *map(str, RULE_FILES), cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_fire_the_alerts() -> None:
    tests = sorted(p.name for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = _run(_promtool(), "test", "rules", *(f"tests/{t}" for t in tests), cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_config_as_deployed(tmp_path: Path) -> None:
    promtool = _promtool()
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    result = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path / "prometheus")
    if NO_KUBERNETES_SD in result.stdout + result.stderr:
        # This promtool cannot read Kubernetes discovery: check everything else on the file-discovery copy.
        copy = tmp_path / "file-sd"
        copy.mkdir()
        assert _write_file_sd_copy(copy), "no kubernetes_sd_configs, yet promtool refused them"
        result = _run(promtool, "check", "config", "prometheus.yml", cwd=copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def _pods_of_base() -> list[dict[str, Any]]:
    """The pod templates of every workload ``kubectl kustomize k8s/base`` renders."""
    return [
        {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"], **d["spec"]["template"]}
        for d in render(K8S / "base")
        if d["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}
    ]


def _targets(pod: dict[str, Any], ip: str, phase: str = "Running") -> list[dict[str, Any]]:
    """What Kubernetes pod discovery yields for one pod: a target per container port."""
    meta = {
        "__meta_kubernetes_namespace": pod["namespace"],
        "__meta_kubernetes_pod_name": f"{pod['name']}-7d9f-x2x4q",
        "__meta_kubernetes_pod_phase": phase,
    }
    for key, value in pod["metadata"].get("labels", {}).items():
        meta["__meta_kubernetes_pod_label_" + re.sub(r"\W", "_", key)] = value
    return [
        {
            "targets": [f"{ip}:{port['containerPort']}"],
            "labels": meta
            | {
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
            },
        }
        for container in pod["spec"]["containers"]
        for port in container.get("ports", [])
    ]


def test_scrape_config_turns_the_manifests_pods_into_the_three_jobs(tmp_path: Path) -> None:
    promtool = _promtool()
    pods = _pods_of_base()
    groups = [group for i, pod in enumerate(pods) for group in _targets(pod, f"10.0.0.{i + 1}")]
    api = next(pod for pod in pods if pod["metadata"]["labels"].get("app.kubernetes.io/component") == "api")
    groups += _targets(api, "10.0.9.9", phase="Pending")  # not scraped until it runs
    stranger = {**api, "metadata": {"labels": {"app.kubernetes.io/component": "api"}}}
    groups += _targets(stranger, "10.0.9.8")  # not part-of=sosohappy
    # this promtool may lack Kubernetes discovery: list the pods in a file instead
    replaced = _write_file_sd_copy(tmp_path, {"sosohappy": groups})
    assert replaced["sosohappy"] == [{"role": "pod", "namespaces": {"names": ["sosohappy"]}}]

    check = _run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in check.stdout
    sd_run = _run(
        promtool, "check", "service-discovery", "--timeout=2s", "prometheus.yml", "sosohappy", cwd=tmp_path
    )
    assert sd_run.returncode == 0, sd_run.stdout + sd_run.stderr
    scraped = {
        (
            t["labels"]["job"],
            t["labels"]["instance"],
            t["labels"]["pod"],
            t["labels"]["namespace"],
            t["labels"]["container"],
        )
        for t in json.loads(sd_run.stdout)
        if t["labels"]  # dropped targets are listed without labels
    }
    by_job = {job: (instance.rsplit(":", 1)[1], ns) for job, instance, _, ns, _ in scraped}
    assert by_job == {
        "sosohappy-api": ("9466", "sosohappy"),
        "sosohappy-worker": ("9464", "sosohappy"),
        "sosohappy-worker-sdk": ("9465", "sosohappy"),
    }, scraped
    assert len(scraped) == 3 and all(pod.endswith("-7d9f-x2x4q") for _, _, pod, _, _ in scraped)


def test_scrape_config_finds_the_exporters_of_the_small_overlay(tmp_path: Path) -> None:
    """The exporter Deployments become jobs sosohappy-mysql and sosohappy-mongodb; their databases'
    own pods are not scraped; Strimzi's Kafka Exporter pod becomes kafka-exporter."""
    promtool = _promtool()
    pods = [
        {"name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"], **d["spec"]["template"]}
        for d in render(OVERLAYS / "small")
        if d["kind"] in {"Deployment", "StatefulSet"}
    ]
    groups = [group for i, pod in enumerate(pods) for group in _targets(pod, f"10.0.1.{i + 1}")]
    # What Strimzi makes of spec.kafkaExporter (its labels and port name).
    strimzi = {
        "name": "sosohappy-kafka-exporter",
        "namespace": "sosohappy",
        "metadata": {
            "labels": {"strimzi.io/cluster": "sosohappy", "strimzi.io/name": "sosohappy-kafka-exporter"}
        },
        "spec": {
            "containers": [
                {"name": "kafka-exporter", "ports": [{"name": "tcp-prometheus", "containerPort": 9404}]}
            ]
        },
    }
    _write_file_sd_copy(tmp_path, {"sosohappy": groups, "kafka-exporter": _targets(strimzi, "10.0.2.1")})
    found: dict[str, set[str]] = {}
    for job in ("sosohappy", "kafka-exporter"):
        sd_run = _run(
            promtool, "check", "service-discovery", "--timeout=2s", "prometheus.yml", job, cwd=tmp_path
        )
        assert sd_run.returncode == 0, sd_run.stdout + sd_run.stderr
        for target in json.loads(sd_run.stdout):
            if target["labels"]:
                found.setdefault(target["labels"]["job"], set()).add(
                    target["labels"]["instance"].rsplit(":", 1)[1]
                )
    assert found == {
        "sosohappy-api": {"9466"},
        "sosohappy-worker": {"9464"},
        "sosohappy-worker-sdk": {"9465"},
        "sosohappy-mysql": {"9104"},
        "sosohappy-mongodb": {"9216"},
        "kafka-exporter": {"9404"},
    }
