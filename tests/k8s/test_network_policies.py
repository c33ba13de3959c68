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
from tests.k8s.netpol import Pod, admits, ingress_isolated, rendered_pods

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
        assert not admits(policies, other, frontend, "rpc"), f"{other.name} reaches the frontend"
        assert not admits(policies, other, frontend, "http"), f"{other.name} reaches the frontend's HTTP API"
    # The server's services among themselves, and Prometheus on the metrics port only.
    for service in ("history", "matching"):
        assert admits(policies, frontend, TEMPORAL[service], "rpc")
        assert admits(policies, TEMPORAL[service], TEMPORAL["worker"], "membership")
        assert not admits(policies, pods["sosohappy-api"], TEMPORAL[service], "rpc")
        assert not admits(policies, TEMPORAL["web"], TEMPORAL[service], "rpc")
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
        assert not admits(policies, other, web, "http"), f"{other.name} reaches the Web UI"
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
        assert not admits(policies, other, api, "http"), f"{other.name} reaches the API's port"
    assert admits(policies, PROMETHEUS, api, "metrics")
    assert not admits(policies, INGRESS_CONTROLLER, api, "metrics")
    # The knob: one peer, the controller's namespace by the label every namespace carries.
    policy = named(docs, "NetworkPolicy", "sosohappy-api")
    (http_rule,) = [r for r in policy["spec"]["ingress"] if {"port": "http", "protocol": "TCP"} in r["ports"]]
    assert http_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_CONTROLLER.namespace}}}
    ]
    assert {i["spec"]["ingressClassName"] for i in of_kind(docs, "Ingress")} == {"nginx"}
