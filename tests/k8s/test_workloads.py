"""The workloads the overlays render have the shape a reviewer would check by hand: probes on named ports,
unprivileged pods, room to drain, autoscalers and disruption budgets, Services, Ingress and network
policies that reach real pods, stores in the cluster only for ``small``, and a migration Job of its own."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.k8s import ROOT
from tests.k8s.manifests import (
    APP_IMAGE,
    OVERLAYS,
    REGISTER_JOB,
    SECRET_EXAMPLE,
    SIZES,
    config_data,
    config_map,
    env_file_keys,
    ident,
    load,
    named,
    of_kind,
    pod_spec,
    pod_templates,
    render,
    selects,
)
from tests.k8s.netpol import admits, rendered_pods


@pytest.mark.parametrize("size", SIZES)
def test_deployments_probe_named_ports_run_unprivileged_and_have_resources(size: str) -> None:
    docs = render(OVERLAYS / size)
    config = config_data(docs)
    assert {d["metadata"]["name"] for d in app_deployments(docs)} == {
        "sosohappy-api",
        "sosohappy-worker",
        "sosohappy-codec",
    }
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"sosohappy"}
    expected = {
        "sosohappy-api": (
            ["api.serve"],
            {"http": int(config["SOSOHAPPY_API_PORT"]), "metrics": int(config["SOSOHAPPY_API_METRICS_PORT"])},
            "http",
        ),
        "sosohappy-worker": (
            ["workers.main"],
            {
                "metrics": int(config["SOSOHAPPY_WORKER_METRICS_PORT"]),
                "sdk-metrics": int(config["SOSOHAPPY_WORKER_TEMPORAL_METRICS_PORT"]),
            },
            "metrics",
        ),
        "sosohappy-codec": (
            ["temporal.codec_server"],
            {"http": int(config["SOSOHAPPY_CODEC_SERVER_PORT"])},
            "http",
        ),
    }
    for deployment in app_deployments(docs):
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
        if name == "sosohappy-codec":  # two keys of the Secret, not all of it
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
            assert refs == {
                key: {"name": "sosohappy-secrets", "key": key}
                for key in ("SOSOHAPPY_TEMPORAL_PAYLOAD_KEYS", "SOSOHAPPY_CODEC_SERVER_TOKEN")
            }
            assert "secretRef" not in sources
        else:
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


@pytest.mark.parametrize("size", SIZES)
def test_every_pod_we_ship_meets_the_restricted_pod_security_standard(size: str) -> None:
    docs = [*render(OVERLAYS / size), *render(OVERLAYS / size / "migrate")]
    docs += load(REGISTER_JOB)
    for workload, template in pod_templates(tuple(docs)):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, ident(workload)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, ident(workload)
        assert pod["automountServiceAccountToken"] is False, ident(workload)
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), ident(workload)
        assert all({"hostPath"}.isdisjoint(volume) for volume in pod.get("volumes", [])), ident(workload)
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, ident(workload)
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, ident(workload)


#: The exporters and the stores they watch, per size: MongoDB's only where it runs in the cluster.
EXPORTERS = {
    "small": {
        "sosohappy-mysqld-exporter": "mysqld-exporter",
        "sosohappy-mongodb-exporter": "mongodb-exporter",
    },
    "large": {"sosohappy-mysqld-exporter": "mysqld-exporter"},
}
#: Who may scrape an exporter: Prometheus' pods in namespace monitoring (k8s/monitoring/README.md).
PROMETHEUS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


def app_deployments(docs: tuple[dict, ...]) -> list[dict]:
    """The Deployments that run our image (the exporters run their own)."""
    return [
        d
        for d in of_kind(docs, "Deployment")
        if all(c["image"] == APP_IMAGE for c in d["spec"]["template"]["spec"]["containers"])
    ]


@pytest.mark.parametrize("size", SIZES)
def test_exporters_are_single_deployments_that_only_prometheus_reaches(size: str) -> None:
    docs = render(OVERLAYS / size)
    exporters = {
        d["metadata"]["name"]: d for d in of_kind(docs, "Deployment") if d not in app_deployments(docs)
    }
    assert {
        name: d["metadata"]["labels"]["app.kubernetes.io/component"] for name, d in exporters.items()
    } == (EXPORTERS[size])
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler")}
    for name, deployment in exporters.items():
        # One replica: a second would double the queries on the database and every series.
        assert deployment["spec"]["replicas"] == 1 and name not in targets, name
        template = deployment["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "sosohappy"  # Prometheus discovers pods by it
        (container,) = template["spec"]["containers"]
        assert [p["name"] for p in container["ports"]] == ["metrics"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "metrics", (name, probe)
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", container["image"]), "exporter images are pinned"
        assert not [e for e in container.get("env", []) if "value" in e and "PASSWORD" in e["name"]]
        policies = [p for p in of_kind(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)]
        assert len(policies) == 1, name
        assert policies[0]["spec"]["ingress"] == [
            {"from": [PROMETHEUS_PEER], "ports": [{"port": "metrics", "protocol": "TCP"}]}
        ], name
    kafka = named(docs, "Kafka", "sosohappy")
    assert "kafkaExporter" in kafka["spec"]
    (policy,) = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].get("strimzi.io/name") == "sosohappy-kafka-exporter"
    ]
    assert policy["spec"]["ingress"] == [
        {"from": [PROMETHEUS_PEER], "ports": [{"port": "tcp-prometheus", "protocol": "TCP"}]}
    ]


def test_api_and_workers_drain_before_they_are_killed() -> None:
    docs = render(OVERLAYS / "small")
    pod = named(docs, "Deployment", "sosohappy-api")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "SOSOHAPPY_API_HOST", "value": "0.0.0.0"} in container["env"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    config = config_data(docs)
    graceful = int(config["SOSOHAPPY_API_GRACEFUL_SHUTDOWN_SECONDS"])
    # After SIGTERM uvicorn drains requests and sockets (timeout_graceful_shutdown), then the lifespan's
    # shutdown stops the pod's sign-in worker, which waits for its running sign-ins (Worker
    # graceful_shutdown_timeout): both bounded by the same setting, one after the other.
    for source in ("api/serve.py", "api/sign_in_worker.py"):
        assert "settings.api_graceful_shutdown_seconds" in (ROOT / source).read_text(), source
    drains = [graceful] + ([graceful] if config["SOSOHAPPY_API_SIGN_IN_WORKER"] == "true" else [])
    assert sleep >= 5 and sleep + sum(drains) < pod["terminationGracePeriodSeconds"], (sleep, drains)
    worker = named(docs, "Deployment", "sosohappy-worker")["spec"]["template"]["spec"]
    drain = float(config_data(docs)["SOSOHAPPY_WORKER_GRACEFUL_SHUTDOWN_SECONDS"])
    assert 60 <= drain < worker["terminationGracePeriodSeconds"], "activities need time to drain"


@pytest.mark.parametrize("size", SIZES)
def test_each_deployment_has_an_autoscaler_a_disruption_budget_and_its_services(size: str) -> None:
    docs = render(OVERLAYS / size)
    for deployment in app_deployments(docs):
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
            for _, t in pod_templates(docs)
            if selects({"matchLabels": service["spec"]["selector"]}, t["metadata"]["labels"])
        ]
        assert pods, f"Service {service['metadata']['name']} selects no pod"
        declared = {p["name"] for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= declared
    api = named(docs, "Service", "sosohappy-api")
    assert api["spec"]["type"] == "ClusterIP" and api["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_large_scales_further_than_small() -> None:
    def bounds(size: str, name: str) -> tuple[int, int]:
        spec = named(render(OVERLAYS / size), "HorizontalPodAutoscaler", name)["spec"]
        return spec["minReplicas"], spec["maxReplicas"]

    assert bounds("small", "sosohappy-api") == (2, 4) and bounds("large", "sosohappy-api") == (4, 20)
    assert bounds("small", "sosohappy-worker") == (1, 2) and bounds("large", "sosohappy-worker") == (3, 12)


@pytest.mark.parametrize("size", SIZES)
def test_ingress_terminates_tls_redirects_and_fits_the_largest_request(size: str) -> None:
    docs = render(OVERLAYS / size)
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


SIGN_IN_PATHS = {"/auth-service/getAuthorizeCode", "/auth-service/signIn"}
LIMIT_ANNOTATIONS = (
    "nginx.ingress.kubernetes.io/limit-rpm",
    "nginx.ingress.kubernetes.io/limit-rps",
    "nginx.ingress.kubernetes.io/limit-connections",
)


@pytest.mark.parametrize("size", SIZES)
def test_sign_in_paths_and_only_they_are_rate_limited_per_client_ip(size: str) -> None:
    docs = render(OVERLAYS / size)
    config = config_data(docs)
    limited: dict[str, dict[str, str]] = {}
    for ingress in of_kind(docs, "Ingress"):
        notes = ingress["metadata"]["annotations"]
        paths = {p["path"]: p["pathType"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
        if any(name in notes for name in LIMIT_ANNOTATIONS):
            assert all(kind == "Exact" for kind in paths.values()), "a limit must not spread to other paths"
            limited |= {path: notes for path in paths}
        else:
            assert not SIGN_IN_PATHS & set(paths), "a sign-in path is served without the limit"
    assert set(limited) == SIGN_IN_PATHS
    for notes in limited.values():
        # One number in two places, like the body size: the ingress and each replica allow the same rate.
        assert (
            notes["nginx.ingress.kubernetes.io/limit-rpm"]
            == config["SOSOHAPPY_SIGN_IN_RATE_LIMIT_PER_MINUTE"]
        )
        assert int(notes["nginx.ingress.kubernetes.io/limit-burst-multiplier"]) >= 1


@pytest.mark.parametrize("size", SIZES)
def test_network_policies_select_existing_pods_and_ports(size: str) -> None:
    docs = render(OVERLAYS / size)
    templates = [t for _, t in pod_templates(docs)]
    kafka = named(docs, "Kafka", "sosohappy")
    # The Kafka Exporter's pods are made by Strimzi from the Kafka's spec.kafkaExporter, with these labels
    # and their metrics port named tcp-prometheus.
    if "kafkaExporter" in kafka["spec"]:
        name = f"{kafka['metadata']['name']}-kafka-exporter"
        labels = {
            "strimzi.io/cluster": kafka["metadata"]["name"],
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": name,
        }
        container = {"name": "kafka-exporter", "ports": [{"name": "tcp-prometheus", "containerPort": 9404}]}
        templates.append({"metadata": {"labels": labels}, "spec": {"containers": [container]}})
    # The brokers, made by Strimzi from the node pools, with the labels its bootstrap Service selects.
    broker = {
        "strimzi.io/cluster": kafka["metadata"]["name"],
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": f"{kafka['metadata']['name']}-kafka",
        "strimzi.io/broker-role": "true",
    }
    container = {"name": "kafka", "ports": [{"name": "tcp-clients", "containerPort": 9092}]}
    templates.append({"metadata": {"labels": broker}, "spec": {"containers": [container]}})
    for policy in of_kind(docs, "NetworkPolicy"):
        name = policy["metadata"]["name"]
        guarded = [t for t in templates if selects(policy["spec"]["podSelector"], t["metadata"]["labels"])]
        assert guarded, f"NetworkPolicy {name} guards no pod"
        ports = {p["name"] for t in guarded for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for rule in policy["spec"].get("ingress", []):
            assert {p["port"] for p in rule["ports"]} <= ports
            peers = [p["podSelector"] for p in rule.get("from", []) if "namespaceSelector" not in p]
            for peer in peers:
                assert any(selects(peer, t["metadata"]["labels"]) for t in templates), f"{name}: dead peer"
        for rule in policy["spec"].get("egress", []):
            peers = [
                p["podSelector"]
                for p in rule.get("to", [])
                if "podSelector" in p and "namespaceSelector" not in p
            ]
            for peer in peers:
                targets = [t for t in templates if selects(peer, t["metadata"]["labels"])]
                assert targets, f"{name}: dead destination {peer}"
                declared = {
                    p["containerPort"] for t in targets for c in t["spec"]["containers"] for p in c["ports"]
                }
                assert {p["port"] for p in rule["ports"]} <= declared, f"{name}: no such port at {peer}"
    for listener in kafka["spec"]["kafka"]["listeners"]:
        peers = [p["podSelector"] for p in listener["networkPolicyPeers"]]
        api = named(docs, "Deployment", "sosohappy-api")["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p, api) for p in peers), "the API could not reach Kafka"


def test_small_runs_its_stores_in_the_cluster_and_large_does_not() -> None:
    small, large = render(OVERLAYS / "small"), render(OVERLAYS / "large")
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
    assert images == {"sosohappy-mysql": "mysql:8.4.8", "sosohappy-mongodb": "mongo:7.0.28"}
    # Both stores admit every pod that uses them: the API, the worker and the migration Job (Alembic on
    # MySQL, then the legacy-message conversion on MongoDB).
    users = [t for _, t in pod_templates(small + render(OVERLAYS / "small" / "migrate"))]
    clients = {t["metadata"]["labels"].get("app.kubernetes.io/component") for t in users}
    assert {"api", "worker", "migrate"} <= clients
    for store in ("sosohappy-mysql", "sosohappy-mongodb"):
        policy = named(small, "NetworkPolicy", store)
        peers = [
            p["podSelector"] for rule in policy["spec"]["ingress"] for p in rule["from"] if "podSelector" in p
        ]
        for template in users:
            labels = template["metadata"]["labels"]
            if labels.get("app.kubernetes.io/component") in {"api", "worker", "migrate"}:
                assert any(selects(peer, labels) for peer in peers), f"{store} refuses {labels}"
    # The first install brings MySQL up before Temporal with
    # `kubectl apply -k k8s/overlays/small -l app.kubernetes.io/instance=sosohappy-mysql`.
    mysql = [
        d
        for d in small
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == "sosohappy-mysql"
    ]
    assert sorted(d["kind"] for d in mysql) == ["ConfigMap", "NetworkPolicy", "Service", "StatefulSet"]


@pytest.mark.parametrize("size", SIZES)
def test_migration_job_is_alone_in_its_kustomization_and_agrees_with_the_app(size: str) -> None:
    app, migrate = render(OVERLAYS / size), render(OVERLAYS / size / "migrate")
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
    # What both apply (namespace, ConfigMap, in-cluster stores) must be identical, or each apply undoes the
    # other's; the Job reads the very ConfigMap the Deployments read.
    shared = {ident(d) for d in migrate} & {ident(d) for d in app}
    assert {"Namespace/sosohappy", ident(config_map(app))} <= shared
    for key in shared:
        assert next(d for d in migrate if ident(d) == key) == next(d for d in app if ident(d) == key), key
    if of_kind(app, "StatefulSet"):
        assert "StatefulSet/sosohappy-mysql" in shared, "the Job would wait for a MySQL that is not there yet"


#: The stores the migration Job works on, by the setting of the Secret sosohappy-secrets that names each:
#: Alembic on MySQL (storage/migrate.py), then the legacy direct messages on MongoDB
#: (dm/migrate_messages.py), waiting for each to answer.
MIGRATION_STORES = ("SOSOHAPPY_DATABASE_URL", "SOSOHAPPY_MONGO_URL")


@pytest.mark.parametrize("size", SIZES)
def test_migration_render_brings_every_in_cluster_store_the_job_migrates(size: str) -> None:
    """On a fresh cluster deploy.sh applies the migration overlay and waits for its Job before the
    application overlay: a store the Job waits for that only the application overlay creates never comes."""
    app, migrate = render(OVERLAYS / size), render(OVERLAYS / size / "migrate")
    (job,) = of_kind(migrate, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert {"secretRef": {"name": "sosohappy-secrets"}} in container["envFrom"]
    job_pod = rendered_pods(migrate)["sosohappy-migrate"]
    example = env_file_keys(SECRET_EXAMPLE)
    in_cluster = []
    for setting in MIGRATION_STORES:
        url = urlsplit(example[setting])
        assert url.hostname and url.port, setting
        service_name, namespace = url.hostname.split(".")[:2]
        assert namespace == "sosohappy", url.hostname
        app_services = [s for s in of_kind(app, "Service") if s["metadata"]["name"] == service_name]
        if not app_services:  # a managed store (large): nothing in the cluster to bring
            assert not of_kind(app, "StatefulSet"), f"{size} runs stores but not the one {setting} names"
            continue
        in_cluster.append(service_name)
        service = named(migrate, "Service", service_name)  # missing: the Job would wait for nothing
        assert service == app_services[0], service_name
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
        backing = [
            d
            for d in of_kind(migrate, "StatefulSet")
            if selects(
                {"matchLabels": service["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        assert len(backing) == 1, f"no {service_name} pod in the migration render"
        assert backing[0] == named(app, "StatefulSet", backing[0]["metadata"]["name"])
        store_pod = rendered_pods(migrate)[backing[0]["metadata"]["name"]]
        port = next(p for p in service["spec"]["ports"] if p["port"] == url.port)["targetPort"]
        assert admits(of_kind(migrate, "NetworkPolicy"), job_pod, store_pod, port), (
            f"{service_name} refuses the Job"
        )
    assert in_cluster == (["sosohappy-mysql", "sosohappy-mongodb"] if size == "small" else [])
    # Only the stores: nothing of the application (its Deployments roll only after the Job completed).
    assert not [d for d in of_kind(migrate, "Deployment")], "the migration render carries a Deployment"


#: A tag naming a patch release (1.2.3, v1.2.3, 1.2.3-variant); "7", "8.4" or "latest" move to new builds.
PATCH_TAG = re.compile(r"v?\d+\.\d+\.\d+(?:[-+][\w.+-]+)?")


def image_is_pinned(image: str) -> bool:
    """Whether an image reference names one build: a sha256 digest, or a tag with a patch level."""
    name, _, digest = image.partition("@")
    if digest:
        return re.fullmatch(r"sha256:[0-9a-f]{64}", digest) is not None
    last = name.rsplit("/", 1)[-1]  # a registry's port is not a tag
    return ":" in last and PATCH_TAG.fullmatch(last.rsplit(":", 1)[1]) is not None


def test_the_image_pin_rule() -> None:
    for floating in (
        "mongo",
        "mongo:7",
        "mysql:8.4",
        "mysql:latest",
        "reg:5000/db",
        "reg:5000/db:8",
        "x:v1.2",
    ):
        assert not image_is_pinned(floating), floating
    for pinned in (
        "mongo:7.0.28",
        "prom/mysqld-exporter:v0.17.2",
        "reg:5000/db:1.2.3",
        "temporalio/admin-tools:1.29.1-tctl-1.18.4-cli-1.5.0",
        "mongo@sha256:" + "0" * 64,
    ):
        assert image_is_pinned(pinned), pinned


@pytest.mark.parametrize("size", SIZES)
def test_every_image_is_pinned_to_a_patch_release(size: str) -> None:
    """A floating tag (none, latest, or without a patch level) pulls a different build whenever a pod is
    rescheduled: a database upgraded by a node drain. Only our own image is named bare here: deploy.sh
    sets its repository and tag (or digest) on every render."""
    docs = [*render(OVERLAYS / size), *render(OVERLAYS / size / "migrate"), *load(REGISTER_JOB)]
    seen = set()
    for obj in docs:
        pod = pod_spec(obj)
        for container in [] if pod is None else pod.get("initContainers", []) + pod["containers"]:
            image = container["image"]
            if image != APP_IMAGE:
                assert image_is_pinned(image), f"{ident(obj)} runs the floating image {image}"
            seen.add(image)
    assert APP_IMAGE in seen and len(seen) >= 3
