"""What the internet reaches: the Ingresses route exactly the client's services (``/auth-service``,
``/feed-service``, ``/dm-service``: every route the app serves under them) and none of the API's own paths
(``/readyz``, ``/healthz``, ``/docs``, ``/openapi.json``, ``/metrics``, ``/``); they all lead to the
Service port ``http``, and the metrics port is on no Service, so no Ingress rule could ever reach it.

Paths are matched as Kubernetes defines ``pathType`` (``Exact``; ``Prefix`` by whole path elements), the
matching ingress-nginx implements."""

from __future__ import annotations

import pytest

from api.docs import DM_SOCKET_PATH
from api.main import create_app
from config import Settings
from tests.k8s.manifests import OVERLAYS, SIZES, Doc, named, of_kind, pod_templates, render

#: The client's services (CLIENT_CONTRACT §0 "Plist key → path", §9): the only public paths.
SERVICES = ("/auth-service", "/feed-service", "/dm-service")
#: Paths of the API itself, for the kubelet, Prometheus and developers.
INTERNAL = ("/", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/asyncapi.json")


def _rules(docs: tuple[Doc, ...]) -> list[tuple[str, str, dict]]:
    """Every (path, pathType, backend service) of every Ingress."""
    return [
        (p["path"], p["pathType"], p["backend"]["service"])
        for ingress in of_kind(docs, "Ingress")
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]


def _matches(path: str, path_type: str, request: str) -> bool:
    if path_type == "Exact":
        return request == path
    assert path_type == "Prefix", f"{path}: pathType {path_type} is implementation-specific"
    prefix = [e for e in path.split("/") if e]
    return [e for e in request.split("/") if e][: len(prefix)] == prefix


def _routed(docs: tuple[Doc, ...], request: str) -> bool:
    return any(_matches(path, kind, request) for path, kind, _ in _rules(docs))


def _app_paths() -> list[str]:
    """Every path the API serves, as a request would name it (``{image_id}`` filled in): its OpenAPI
    paths, the DM socket (no OpenAPI operation) and the description's own."""
    app = create_app(Settings(env="test"))  # local: the description is served too
    paths = [
        *app.openapi()["paths"],
        DM_SOCKET_PATH,
        app.openapi_url or "",
        app.docs_url or "",
        app.redoc_url or "",
    ]
    return [p.replace("{image_id}", "1234") for p in paths if p]


@pytest.mark.parametrize("size", SIZES)
def test_the_ingresses_route_the_clients_services_and_nothing_else(size: str) -> None:
    docs = render(OVERLAYS / size)
    for path, kind, _ in _rules(docs):
        assert any(_matches(service, "Prefix", path) for service in SERVICES), f"{path} ({kind}) is routed"
    served = _app_paths()
    assert "/readyz" in served and "/feed-service/findOtherFeed" in served  # the scan sees the app
    for request in served:
        public = any(_matches(service, "Prefix", request) for service in SERVICES)
        assert _routed(docs, request) is public, request
    for request in INTERNAL:
        assert not _routed(docs, request), f"{request} is reachable from the internet"
    # Look-alikes of a service prefix are no service.
    assert not _routed(docs, "/feed-service-internal/metrics") and not _routed(docs, "/feed-servicex")


@pytest.mark.parametrize("size", SIZES)
def test_the_metrics_port_is_behind_no_service_and_only_prometheus_reaches_it(size: str) -> None:
    docs = render(OVERLAYS / size)
    backends = {(b["name"], b["port"]["name"]) for _, _, b in _rules(docs)}
    assert backends == {("sosohappy-api", "http")}
    service = named(docs, "Service", "sosohappy-api")
    api_pod = next(
        t
        for _, t in pod_templates(docs)
        if t["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    )
    (container,) = api_pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    assert ports["metrics"] != ports["http"]
    for other in of_kind(docs, "Service"):  # no Service of any name carries the API pods' metrics port
        selector = other["spec"].get("selector", {})
        if selector.items() <= api_pod["metadata"]["labels"].items():
            targets = {p["targetPort"] for p in other["spec"]["ports"]}
            assert not targets & {"metrics", ports["metrics"]}, other["metadata"]["name"]
    policy = named(docs, "NetworkPolicy", "sosohappy-api")
    by_port = {p["port"]: rule.get("from") for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    # only from the ingress controller's namespace (tests/k8s/test_network_policies.py: nothing else)
    assert by_port["http"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert by_port["metrics"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    annotations = api_pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
