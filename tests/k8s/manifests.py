"""Reading the manifests under ``k8s/``: rendering a kustomization (with ``kubectl kustomize``, once per
directory and session) and picking objects out of what it renders."""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s import ROOT
from tests.k8s.tools import find_tool

K8S = ROOT / "k8s"
OVERLAYS = K8S / "overlays"
SIZES = ("small", "large")
NAMESPACE = "sosohappy"
#: The image name the manifests use for the backend; the deploy sets the real repository and tag.
APP_IMAGE = "sosohappy-backend"
REGISTER_JOB = ROOT / "temporal" / "k8s" / "register-job.yaml"
#: The example of the Secret sosohappy-secrets (every key, with the in-cluster stores' URLs of the small size).
SECRET_EXAMPLE = K8S / "base" / "secrets.example.env"
STRIMZI_GROUPS = {"kafka.strimzi.io", "core.strimzi.io"}

Doc = dict[str, Any]


def _kustomize_command() -> list[str] | None:
    kubectl = find_tool("kubectl")
    if kubectl:
        return [kubectl, "kustomize"]
    kustomize = find_tool("kustomize")
    if kustomize:
        return [kustomize, "build"]
    return None


KUSTOMIZE = _kustomize_command()


def rel(path: Path) -> str:
    """``path`` relative to the repository (test ids and messages)."""
    return str(path.relative_to(ROOT))


def load(path: Path) -> list[Any]:
    """The YAML documents of ``path``, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def env_file_keys(path: Path) -> dict[str, str]:
    """KEY -> value of an env file (``KEY=value`` lines, comments left out)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@functools.cache
def render(directory: Path) -> tuple[Doc, ...]:
    """The objects ``kubectl kustomize directory`` renders (once per directory and session: do not mutate
    them). Fails the test when neither kubectl nor kustomize is installed: unrendered is unvalidated."""
    if KUSTOMIZE is None:
        pytest.fail("rendering the manifests needs kubectl (>= 1.27, with kustomize) or kustomize on PATH")
    done = subprocess.run([*KUSTOMIZE, str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kustomize {rel(directory)} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def secret_examples() -> dict[str, dict[str, str]]:
    """Secret name -> its keys and example values, from every secrets.example.env ("Keys of the Secret
    "<name>"")."""
    examples: dict[str, dict[str, str]] = {}
    for path in K8S.rglob("secrets.example.env"):
        match = re.search(r'Keys of the Secret "([\w.-]+)"', path.read_text())
        assert match, f"{rel(path)} does not say which Secret it describes"
        examples[match.group(1)] = env_file_keys(path)
    return examples


def register_container() -> Doc:
    """The one container of the Temporal registration Job (``temporal/k8s/register-job.yaml``)."""
    (job,) = load(REGISTER_JOB)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def ident(doc: Doc) -> str:
    """``Kind/name`` of an object."""
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def api_group(doc: Doc) -> str:
    """The API group of an object ("" for the core group)."""
    version = str(doc.get("apiVersion", ""))
    return version.rpartition("/")[0] if "/" in version else ""


def of_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    """The objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def named(docs: Iterable[Doc], kind: str, name: str) -> Doc:
    """The one object of ``kind`` called ``name``."""
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def config_map(docs: Iterable[Doc]) -> Doc:
    """The generated ConfigMap sosohappy-config-<hash>."""
    maps = [
        d for d in of_kind(docs, "ConfigMap") if re.fullmatch(r"sosohappy-config-\w+", d["metadata"]["name"])
    ]
    assert len(maps) == 1, [d["metadata"]["name"] for d in maps]
    return maps[0]


def config_data(docs: Iterable[Doc]) -> dict[str, str]:
    """The settings in the generated ConfigMap."""
    return dict(config_map(docs)["data"])


def pod_templates(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(object, pod template) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, doc["spec"]["template"]


def pod_spec(obj: Doc) -> Doc | None:
    """The pod spec of any workload (CronJobs included), None for an object that runs no pod."""
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template")
    return template.get("spec") if isinstance(template, dict) else None


def backend_containers(docs: Iterable[Doc]) -> Iterator[tuple[str, Doc]]:
    """(workload name, container) of every container, init containers included, that runs our image."""
    for obj in docs:
        pod = pod_spec(obj)
        if pod is None:
            continue
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            if APP_IMAGE in container.get("image", ""):
                yield obj["metadata"]["name"], container


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels + matchExpressions In/Exists) matches ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and expr["key"] not in labels:
            return False
    return True
