"""Who may connect to whom: the NetworkPolicies of namespace sosohappy (the overlays) and of namespace
temporal (``temporal/k8s/network-policies.yaml``), evaluated together (``tests/k8s/netpol.py``) for the
connections the system makes and for the ones it must refuse."""

from __future__ import annotations

import pytest

from tests.k8s import ROOT
from tests.k8s.manifests import (
    OVERLAYS,
    REGISTER_JOB,
    SIZES,
    Doc,
    config_data,
    load,
    named,
    of_kind,
    render,
    selects,
)
from tests.k8s.netpol import Address, Pod, admits, egress_isolated, ingress_isolated, rendered_pods

TEMPORAL_POLICIES = ROOT / "temporal" / "k8s" / "network-policies.yaml"


def temporal_pod(component: str, ports: dict[str, int]) -> Pod:
    """A pod of the Temporal chart's release "temporal" (its labels: temporal/helm, chart templates)."""
    labels = {
        "app.kubernetes.io/name": "temporal",
        "app.kubernetes.io/instance": "temporal",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "temporal",
    }
    return Pod("temporal", labels, ports, f"temporal-{component}")


#: The chart's pods and their named container ports.
TEMPORAL = {
    "frontend": temporal_pod("frontend", {"rpc": 7233, "membership": 6933, "http": 7243, "metrics": 9090}),
    "history": temporal_pod("history", {"rpc": 7234, "membership": 6934, "metrics": 9090}),
    "matching": temporal_pod("matching", {"rpc": 7235, "membership": 6935, "metrics": 9090}),
    "worker": temporal_pod("worker", {"membership": 6939, "metrics": 9090}),
    "web": temporal_pod("web", {"http": 8080}),
    "admintools": temporal_pod("admintools", {}),
}
#: Pods of other namespaces.
PROMETHEUS = Pod("monitoring", {"app.kubernetes.io/name": "prometheus"}, name="prometheus")
INGRESS_CONTROLLER = Pod(
    "ingress-nginx",
    {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
    name="ingress-nginx-controller",
)
STRANGER = Pod("default", {"app": "debug-shell"}, name="a pod of another namespace")
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53, "dns-tcp": 53}, name="kube-dns")
GRAFANA = Pod("monitoring", {"app.kubernetes.io/name": "grafana"}, name="grafana")
#: A broker Strimzi runs for the Kafka "sosohappy" (the labels its bootstrap Service selects).
KAFKA_BROKER = Pod(
    "sosohappy",
    {
        "strimzi.io/cluster": "sosohappy",
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": "sosohappy-kafka",
        "strimzi.io/pool-name": "dual-role",
        "strimzi.io/broker-role": "true",
    },
    {"tcp-clients": 9092},
    name="sosohappy-dual-role-0",
)
#: Addresses outside the pod network: FCM's (IPv4 and IPv6), the cloud's metadata server, private ranges
#: (another tenant's service, the node network), a managed store's private address.
PUBLIC = [Address("142.250.196.106"), Address("2404:6800:4004:80f::200a")]
METADATA = Address("169.254.169.254")
PRIVATE = [Address(ip) for ip in ("10.0.0.10", "172.16.5.4", "192.168.1.1", "100.64.0.1", "fd00:ec2::254")]
MANAGED_STORE = Address("10.20.0.5")


def ingress_admits(policies: list[Doc], source: Pod, target: Pod, port: int | str) -> bool:
    """Whether ``target``'s ingress policies alone admit ``source`` (whatever the source's egress says)."""
    return admits(policies, source, target, port, sides=("Ingress",))


def register_pod() -> Pod:
    (job,) = load(REGISTER_JOB)
    return Pod(
        "temporal", dict(job["spec"]["template"]["metadata"]["labels"]), name="sosohappy-temporal-register"
    )


def all_policies(size: str) -> list[Doc]:
    """The NetworkPolicies a cluster of ``size`` runs with: both overlays' and namespace temporal's."""
    docs = [*render(OVERLAYS / size), *render(OVERLAYS / size / "migrate"), *load(TEMPORAL_POLICIES)]
    unique = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in of_kind(docs, "NetworkPolicy")
    }
    return list(unique.values())


def app_pods(size: str) -> dict[str, Pod]:
    return {**rendered_pods(render(OVERLAYS / size)), **rendered_pods(render(OVERLAYS / size / "migrate"))}


@pytest.mark.parametrize("size", SIZES)
def test_temporal_frontend_takes_only_temporal_its_tools_and_the_app(size: str) -> None:
    policies, pods = all_policies(size), app_pods(size)
    frontend = TEMPORAL["frontend"]
    for pod in TEMPORAL.values():
        assert ingress_isolated(policies, pod), f"{pod.name} is open to every pod of the cluster"
    clients = [
        pods["sosohappy-api"],
        pods["sosohappy-worker"],
        register_pod(),
        TEMPORAL["web"],
        TEMPORAL["admintools"],
        TEMPORAL["history"],
        TEMPORAL["matching"],
        TEMPORAL["worker"],
    ]
    for client in clients:
        assert admits(policies, client, frontend, "rpc"), f"{client.name} cannot reach the frontend"
    # No workflow starts (a ResignWorkflow for any user id) from anything else.
    others = [p for name, p in pods.items() if name not in {"sosohappy-api", "sosohappy-worker"}]
    assert {"sosohappy-codec", "sosohappy-migrate"} <= {p.name for p in others}
    others += [PROMETHEUS, INGRESS_CONTROLLER, STRANGER]
    for other in others:
        assert not ingress_admits(policies, other, frontend, "rpc"), f"{other.name} reaches the frontend"
        assert not ingress_admits(policies, other, frontend, "http"), f"{other.name} reaches its HTTP API"
    # The server's services among themselves, and Prometheus on the metrics port only.
    for service in ("history", "matching"):
        assert admits(policies, frontend, TEMPORAL[service], "rpc")
        assert admits(policies, TEMPORAL[service], TEMPORAL["worker"], "membership")
        assert not ingress_admits(policies, pods["sosohappy-api"], TEMPORAL[service], "rpc")
        assert not ingress_admits(policies, TEMPORAL["web"], TEMPORAL[service], "rpc")
    for service in ("frontend", "history", "matching", "worker"):
        assert admits(policies, PROMETHEUS, TEMPORAL[service], "metrics")
        assert not admits(policies, STRANGER, TEMPORAL[service], "metrics")
    assert not admits(policies, PROMETHEUS, frontend, "rpc")


@pytest.mark.parametrize("size", SIZES)
def test_temporal_web_ui_is_reached_only_through_port_forward(size: str) -> None:
    """kubectl port-forward enters the pod's network namespace (RBAC decides); no pod may connect."""
    policies, pods = all_policies(size), app_pods(size)
    web = TEMPORAL["web"]
    for other in [*pods.values(), *TEMPORAL.values(), PROMETHEUS, INGRESS_CONTROLLER, STRANGER]:
        assert not ingress_admits(policies, other, web, "http"), f"{other.name} reaches the Web UI"
    # Neither the UI nor admin-tools is named by any rule that admits something.
    for pod in (web, TEMPORAL["admintools"]):
        for policy in policies:
            if policy["metadata"].get("namespace") == "temporal" and policy["spec"].get("ingress"):
                assert not selects(policy["spec"]["podSelector"], pod.labels), policy["metadata"]["name"]


@pytest.mark.parametrize("size", SIZES)
def test_api_port_is_reached_only_from_the_ingress_controller(size: str) -> None:
    """The API trusts X-Forwarded-For from any peer: were any pod a peer, it could name the client address
    it likes and dodge the sign-in rate limit (the ingress's and each replica's)."""
    docs = render(OVERLAYS / size)
    config = config_data(docs)
    assert config["SOSOHAPPY_API_PROXY_HEADERS"] == "true"
    assert config["SOSOHAPPY_API_FORWARDED_ALLOW_IPS"] == "*", "then the policy may be loosened only to match"
    policies, pods = all_policies(size), app_pods(size)
    api = pods["sosohappy-api"]
    assert admits(policies, INGRESS_CONTROLLER, api, "http")
    for other in [*pods.values(), *TEMPORAL.values(), PROMETHEUS, STRANGER]:
        assert not ingress_admits(policies, other, api, "http"), f"{other.name} reaches the API's port"
    assert admits(policies, PROMETHEUS, api, "metrics")
    assert not admits(policies, INGRESS_CONTROLLER, api, "metrics")
    # The knob: one peer, the controller's namespace by the label every namespace carries.
    policy = named(docs, "NetworkPolicy", "sosohappy-api")
    (http_rule,) = [r for r in policy["spec"]["ingress"] if {"port": "http", "protocol": "TCP"} in r["ports"]]
    assert http_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_CONTROLLER.namespace}}}
    ]
    assert {i["spec"]["ingressClassName"] for i in of_kind(docs, "Ingress")} == {"nginx"}


@pytest.mark.parametrize("size", SIZES)
def test_worker_ports_are_read_only_by_prometheus(size: str) -> None:
    policies, pods = all_policies(size), app_pods(size)
    worker = pods["sosohappy-worker"]
    assert set(worker.ports) == {"metrics", "sdk-metrics"}
    for port in worker.ports:
        assert admits(policies, PROMETHEUS, worker, port)
        for other in [*pods.values(), *TEMPORAL.values(), INGRESS_CONTROLLER, GRAFANA, STRANGER]:
            assert not ingress_admits(policies, other, worker, port), (
                f"{other.name} reads the worker's {port}"
            )


@pytest.mark.parametrize("size", SIZES)
def test_api_and_worker_connect_only_to_what_they_use(size: str) -> None:
    """DNS, the stores, Kafka (the API), the Temporal frontend, and HTTPS to public addresses (FCM, Apple):
    never a private range or the cloud's metadata server (its credentials), nor anything else."""
    policies, pods = all_policies(size), app_pods(size)
    api, worker = pods["sosohappy-api"], pods["sosohappy-worker"]
    for pod in (api, worker):
        assert egress_isolated(policies, pod), f"{pod.name} may connect anywhere"
        assert admits(policies, pod, KUBE_DNS, 53, "UDP") and admits(policies, pod, KUBE_DNS, 53, "TCP")
        assert not admits(policies, pod, STRANGER, 53, "UDP")
        assert admits(policies, pod, TEMPORAL["frontend"], "rpc")
        for other in ("history", "matching", "web"):
            target = TEMPORAL[other]
            assert not any(admits(policies, pod, target, port) for port in target.ports), (pod.name, other)
        for address in PUBLIC:
            assert admits(policies, pod, address, 443), (pod.name, address)
            assert not admits(policies, pod, address, 80), (pod.name, address)
        for address in [METADATA, *PRIVATE]:
            for port in (80, 443, 8080):
                assert not admits(policies, pod, address, port), (pod.name, address, port)
        assert not admits(policies, pod, pods["sosohappy-codec"], "http")
        assert not admits(policies, pod, STRANGER, 443)
        if size == "small":
            assert admits(policies, pod, pods["sosohappy-mysql"], "mysql")
            assert admits(policies, pod, pods["sosohappy-mongodb"], "mongodb")
            assert not admits(policies, pod, MANAGED_STORE, 3306)
        else:  # the managed stores, on their ports only, and never through the metadata server
            assert admits(policies, pod, MANAGED_STORE, 3306) and admits(policies, pod, MANAGED_STORE, 27017)
            assert not admits(policies, pod, MANAGED_STORE, 22)
            assert not admits(policies, pod, METADATA, 3306)
    assert admits(policies, api, KAFKA_BROKER, "tcp-clients")
    assert not admits(policies, worker, KAFKA_BROKER, "tcp-clients"), "the worker uses no Kafka"
    # The migration Job is not limited (it waits for the stores before anything else is up).
    assert not egress_isolated(policies, pods["sosohappy-migrate"])


@pytest.mark.parametrize("size", SIZES)
def test_codec_server_connects_nowhere_and_only_temporal_tools_reach_it(size: str) -> None:
    policies, pods = all_policies(size), app_pods(size)
    codec = pods["sosohappy-codec"]
    assert egress_isolated(policies, codec)
    targets: list[tuple[Pod | Address, int | str]] = [(KUBE_DNS, 53), (TEMPORAL["frontend"], "rpc")]
    targets += [(address, 443) for address in [*PUBLIC, METADATA, *PRIVATE]]
    targets += [(p, port) for name, p in pods.items() if name != "sosohappy-codec" for port in p.ports]
    for target, port in targets:
        assert not admits(policies, codec, target, port), (target, port)
        assert not admits(policies, codec, target, port, "UDP"), (target, port)
    for tool in ("web", "admintools"):
        assert admits(policies, TEMPORAL[tool], codec, "http")
    for other in [*pods.values(), INGRESS_CONTROLLER, STRANGER]:
        assert not ingress_admits(policies, other, codec, "http"), other.name


def test_mysql_admits_only_the_processes_that_use_it() -> None:
    """The API, the worker and the migration Job; the Temporal server (its databases); mysqld_exporter and
    Grafana as the monitoring user. Not the codec server, which holds the payload keys."""
    policies, pods = all_policies("small"), app_pods("small")
    mysql = pods["sosohappy-mysql"]
    users = [pods[n] for n in ("sosohappy-api", "sosohappy-worker", "sosohappy-migrate")]
    users += [pods["sosohappy-mysqld-exporter"], GRAFANA]
    users += [TEMPORAL[s] for s in ("frontend", "history", "matching", "worker")]
    for user in users:
        assert admits(policies, user, mysql, "mysql"), f"MySQL refuses {user.name}"
    others = [pods["sosohappy-codec"], pods["sosohappy-mongodb"], pods["sosohappy-mongodb-exporter"]]
    # (Every pod of the Temporal release is admitted as one: its schema Job, too, sets up the databases.)
    others += [PROMETHEUS, INGRESS_CONTROLLER, STRANGER]
    for other in others:
        assert not ingress_admits(policies, other, mysql, "mysql"), f"MySQL admits {other.name}"
