"""Every manifest under ``k8s/`` and ``temporal/`` is one a cluster would accept: every kustomization renders,
and every object validates offline (built-in kinds strictly against one Kubernetes version, Strimzi kinds
with the CRD validators in ``k8s/tools``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest

from tests.k8s import ROOT
from tests.k8s.manifests import (
    K8S,
    SIZES,
    STRIMZI_GROUPS,
    Doc,
    api_group,
    ident,
    load,
    of_kind,
    rel,
    render,
)

KUBERNETES_VERSION = "1.31.0"
STRIMZI_VALIDATOR = K8S / "tools" / "validate-strimzi.mjs"


def _kustomization_files() -> list[Path]:
    names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    return sorted(p for n in names for p in K8S.rglob(n) if "node_modules" not in p.parts)


def _is_component(path: Path) -> bool:
    return bool(load(path)[0].get("kind") == "Component")


KUSTOMIZATIONS = [p.parent for p in _kustomization_files() if not _is_component(p)]
COMPONENTS = [p.parent for p in _kustomization_files() if _is_component(p)]


def strimzi_errors(docs: list[Doc]) -> list[str]:
    """Errors of the Strimzi documents, from k8s/tools/validate-strimzi.mjs (schema + unknown fields)."""
    node = shutil.which("node")
    assert node, "node is needed to validate the Strimzi resources (k8s/tools); it is not installed"
    assert (K8S / "tools" / "node_modules").is_dir(), "k8s/tools has no node_modules: run `make install-dev`"
    done = subprocess.run(
        [node, str(STRIMZI_VALIDATOR)], input=json.dumps(docs), capture_output=True, text=True, timeout=60
    )
    assert done.stdout, f"the Strimzi validator printed nothing:\n{done.stderr}"
    results = json.loads(done.stdout)
    assert len(results) == len(docs)
    errors = [f"{r['kind']}/{r['name']}: {e}" for r in results for e in r["errors"]]
    assert (done.returncode != 0) == bool(errors), done.stderr
    return errors


def validation_errors(docs: list[Doc] | tuple[Doc, ...]) -> list[str]:
    """Every reason a document would not be accepted: built-in kinds against Kubernetes' own schemas
    (strict: unknown fields fail), Strimzi kinds against the CRDs, anything else is unknown."""
    errors: list[str] = []
    strimzi: list[Doc] = []
    for doc in docs:
        group = api_group(doc)
        if group in STRIMZI_GROUPS:
            strimzi.append(doc)
        elif group == "" or "." not in group or group.endswith(".k8s.io"):
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                errors.append(
                    f"{ident(doc)}: {doc.get('apiVersion')} is not in Kubernetes {KUBERNETES_VERSION}"
                )
            except kubernetes_validate.ValidationError as error:
                where = "/".join(map(str, error.absolute_path))
                errors.append(f"{ident(doc)}: {where}: {error.message}")
        else:
            errors.append(f"{ident(doc)}: unknown kind {doc.get('apiVersion')} (not Kubernetes, not Strimzi)")
    return errors + (strimzi_errors(strimzi) if strimzi else [])


def _referenced_files() -> set[Path]:
    """Files a kustomization (or component) uses: resources, patches, generator sources."""
    used: set[Path] = set()
    for path in _kustomization_files():
        spec = load(path)[0]
        entries = [*spec.get("resources", []), *spec.get("patchesStrategicMerge", [])]
        entries += [p["path"] for p in spec.get("patches", []) if "path" in p]
        for generator in [*spec.get("configMapGenerator", []), *spec.get("secretGenerator", [])]:
            entries += [f.split("=", 1)[-1] for f in generator.get("files", []) + generator.get("envs", [])]
        used |= {(path.parent / entry).resolve() for entry in entries}
    return used


def standalone_manifests() -> list[Path]:
    """YAML files of Kubernetes objects under k8s/ and temporal/ that no kustomization renders."""
    used = _referenced_files()
    found = []
    for top in (K8S, ROOT / "temporal"):
        for path in sorted([*top.rglob("*.yaml"), *top.rglob("*.yml")]):
            if (
                "node_modules" in path.parts
                or path.name.startswith("kustomization")
                or path.resolve() in used
            ):
                continue
            docs = load(path)
            if docs and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
                found.append(path)
    return found


def test_kustomizations_and_components_are_found() -> None:
    assert {rel(d) for d in KUSTOMIZATIONS} >= {
        *(f"k8s/overlays/{size}" for size in SIZES),
        *(f"k8s/overlays/{size}/migrate" for size in SIZES),
    }
    used = set()
    for path in _kustomization_files():
        used |= {(path.parent / c).resolve() for c in load(path)[0].get("components", [])}
    assert not [rel(c) for c in COMPONENTS if c.resolve() not in used], "a component no kustomization renders"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_kustomization_renders_valid_objects(directory: Path) -> None:
    docs = render(directory)
    assert docs, f"{rel(directory)} renders nothing"
    assert validation_errors(docs) == []
    # Secrets are created by hand (secrets.example.env); none is ever rendered from the repository.
    assert of_kind(docs, "Secret") == []


@pytest.mark.parametrize("path", standalone_manifests(), ids=rel)
def test_standalone_manifest_is_valid(path: Path) -> None:
    assert validation_errors(load(path)) == []


def test_the_validators_refuse_what_the_cluster_would_refuse() -> None:
    deployment = load(K8S / "base" / "api.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    topic = load(K8S / "components" / "kafka" / "topics.yaml")[0]
    typo = {**topic, "spec": {**topic["spec"], "replicaz": 3}}
    wrong_type = {**topic, "spec": {**topic["spec"], "partitions": "one"}}
    removed_api = {**topic, "apiVersion": "kafka.strimzi.io/v1alpha9"}
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}

    errors = validation_errors([deployment, typo, wrong_type, removed_api, unknown])

    assert any("imagee" in e for e in errors)
    assert any("spec.replicaz: unknown field" in e for e in errors)
    assert any("/spec/partitions" in e for e in errors)
    assert any("no Strimzi schema for kafka.strimzi.io/v1alpha9" in e for e in errors)
    assert any("Widget/w: unknown kind" in e for e in errors)
    assert validation_errors([topic]) == []
