"""Every manifest under ``k8s/`` and ``temporal/`` is one a cluster would accept: every kustomization renders,
and every object validates offline (built-in kinds strictly against one Kubernetes version, Strimzi kinds
with check-jsonschema against their CRD schemas in ``k8s/schemas/strimzi``)."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
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
from tests.k8s.tools import require_tool

KUBERNETES_VERSION = "1.31.0"
STRIMZI_SCHEMAS = K8S / "schemas" / "strimzi"


def _kustomization_files() -> list[Path]:
    names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    return sorted(p for n in names for p in K8S.rglob(n) if "node_modules" not in p.parts)


def _is_component(path: Path) -> bool:
    return bool(load(path)[0].get("kind") == "Component")


KUSTOMIZATIONS = [p.parent for p in _kustomization_files() if not _is_component(p)]
COMPONENTS = [p.parent for p in _kustomization_files() if _is_component(p)]


def strimzi_errors(docs: list[Doc]) -> list[str]:
    """Errors of the Strimzi documents: check-jsonschema against the CRD schemas of ``k8s/schemas/strimzi``
    (written from Strimzi's CRDs by ``k8s/tools/strimzi_schemas.py``; unknown fields fail)."""
    errors: list[str] = []
    by_schema: dict[Path, list[Doc]] = {}
    for doc in docs:
        group, _, version = str(doc.get("apiVersion", "")).partition("/")
        schema = STRIMZI_SCHEMAS / group / version / f"{str(doc.get('kind', '')).lower()}.json"
        if version and schema.is_file():
            by_schema.setdefault(schema, []).append(doc)
        else:
            errors.append(f"{ident(doc)}: no Strimzi schema for {doc.get('apiVersion')} {doc.get('kind')}")
    with tempfile.TemporaryDirectory() as tmp:
        for n, (schema, group_docs) in enumerate(by_schema.items()):
            files = {}
            for i, doc in enumerate(group_docs):
                path = Path(tmp) / f"{n}-{i}.json"
                path.write_text(json.dumps(doc), encoding="utf-8")
                files[path.name] = doc
            done = subprocess.run(
                [
                    require_tool("check-jsonschema"),
                    "--schemafile",
                    str(schema),
                    "-o",
                    "json",
                    *sorted(str(Path(tmp) / name) for name in files),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            report = json.loads(done.stdout)
            assert not report.get("parse_errors"), report
            found = [_strimzi_error(files[Path(e["filename"]).name], e) for e in report["errors"]]
            assert (done.returncode != 0) == bool(found), done.stderr
            errors += [line for lines in found for line in lines]
    return errors


def _strimzi_error(doc: Doc, error: dict[str, str]) -> list[str]:
    """One check-jsonschema error as lines naming the document; a field the CRD does not declare reads
    ``<path>.<field>: unknown field``."""
    unexpected = re.fullmatch(
        r"Additional properties are not allowed \((.*) (?:was|were) unexpected\)", error["message"]
    )
    if unexpected:
        names = re.findall(r"'((?:[^'\\]|\\.)*)'", unexpected.group(1))
        return [f"{ident(doc)}: {error['path']}.{name}: unknown field" for name in names]
    return [f"{ident(doc)}: {error['path']}: {error['message']}"]


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
    kafka = load(K8S / "components" / "kafka" / "kafka.yaml")[0]
    listener = kafka["spec"]["kafka"]["listeners"][0]
    listener.update(tlz=True, type="bogus")

    errors = validation_errors([deployment, typo, wrong_type, removed_api, unknown, kafka])

    assert any("imagee" in e for e in errors)
    assert any("KafkaTopic/sosohappy-token-revocations: $.spec.replicaz: unknown field" in e for e in errors)
    assert any("$.spec.partitions: 'one' is not of type 'integer'" in e for e in errors)
    assert any("no Strimzi schema for kafka.strimzi.io/v1alpha9" in e for e in errors)
    assert any("Widget/w: unknown kind" in e for e in errors)
    # nested in a list, and an enum of the CRD; the free-form `config` map still takes any key
    assert any("$.spec.kafka.listeners[0].tlz: unknown field" in e for e in errors)
    assert any("$.spec.kafka.listeners[0].type: 'bogus' is not one of" in e for e in errors)
    assert not [e for e in errors if ".config." in e]
    assert validation_errors([topic]) == []
