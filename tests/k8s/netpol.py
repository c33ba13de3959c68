"""What a set of NetworkPolicies lets through, evaluated the way the API server documents it: a pod that no
policy of a direction selects is open in that direction; once one selects it, a connection passes only if
some rule of some selecting policy admits it (peers and ports, OR-ed across rules and policies).

Enough of the semantics for the manifests' checks: pod, namespace and ipBlock peers, numeric and named
ports (``endPort`` ranges), protocols. Pods are described by namespace, labels and named ports; a pod's
own address is not modelled, so an ipBlock matches only an :class:`Address`."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.k8s.manifests import Doc, pod_templates, selects


@dataclass(frozen=True)
class Pod:
    """A pod: its namespace, labels and named container ports (name -> number)."""

    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)
    #: For messages.
    name: str = "pod"

    def namespace_labels(self) -> dict[str, str]:
        """The label every namespace carries (``kubernetes.io/metadata.name``)."""
        return {"kubernetes.io/metadata.name": self.namespace}


@dataclass(frozen=True)
class Address:
    """An IP address outside the pod network (the internet, the cloud's metadata server, a managed store)."""

    ip: str


Peer = Pod | Address


def rendered_pods(docs: Iterable[Doc], namespace: str = "sosohappy") -> dict[str, Pod]:
    """Workload name -> the pod its template makes (Deployments, StatefulSets, Jobs)."""
    pods = {}
    for workload, template in pod_templates(tuple(docs)):
        ports = {
            p["name"]: p["containerPort"]
            for c in template["spec"]["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        name = workload["metadata"]["name"]
        ns = workload["metadata"].get("namespace", namespace)
        pods[name] = Pod(ns, dict(template["metadata"]["labels"]), ports, name)
    return pods


def _types(policy: Doc) -> list[str]:
    spec = policy["spec"]
    return list(spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"]))


def _guards(policy: Doc, pod: Pod, direction: str) -> bool:
    namespace = policy["metadata"].get("namespace", "sosohappy")
    return (
        namespace == pod.namespace
        and direction in _types(policy)
        and selects(policy["spec"].get("podSelector") or {}, pod.labels)
    )


def _peer_matches(peer: dict[str, Any], other: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        inside = ip.version == ipaddress.ip_network(block["cidr"]).version and ip in ipaddress.ip_network(
            block["cidr"]
        )
        excepted = any(
            ip.version == ipaddress.ip_network(e).version and ip in ipaddress.ip_network(e)
            for e in block.get("except", [])
        )
        return inside and not excepted
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.namespace_labels()):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], other.labels)


def _port_matches(rule_ports: list[dict[str, Any]] | None, port: int, protocol: str, target: Peer) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            if isinstance(target, Pod) and target.ports.get(wanted) == port:
                return True
        elif wanted <= port <= entry.get("endPort", wanted):
            return True
    return False


def admits(
    policies: Iterable[Doc],
    source: Peer,
    target: Peer,
    port: int | str,
    protocol: str = "TCP",
    *,
    sides: tuple[str, ...] = ("Egress", "Ingress"),
) -> bool:
    """Whether a connection from ``source`` to ``target`` on ``port`` (a number, or the name of one of the
    target's container ports) passes the egress policies of the source and the ingress policies of the
    target (``sides``: only one of them, to check a policy on its own)."""
    policies = list(policies)
    if isinstance(port, str):
        assert isinstance(target, Pod) and port in target.ports, f"{port} is not a port of {target}"
        port = target.ports[port]
    if (
        isinstance(source, Pod)
        and "Egress" in sides
        and not _admitted(policies, source, "Egress", target, port, protocol)
    ):
        return False
    if (
        isinstance(target, Pod)
        and "Ingress" in sides
        and not _admitted(policies, target, "Ingress", source, port, protocol)
    ):
        return False
    return True


def _admitted(policies: list[Doc], pod: Pod, direction: str, other: Peer, port: int, protocol: str) -> bool:
    """Whether the ``direction`` policies guarding ``pod`` (none: everything) let ``port`` through to or
    from ``other`` (the far side: the target of an egress, the source of an ingress)."""
    guarding = [p for p in policies if _guards(p, pod, direction)]
    peers = "to" if direction == "Egress" else "from"
    far_target = other if direction == "Egress" else pod
    return not guarding or any(
        _port_matches(rule.get("ports"), port, protocol, far_target)
        and (
            not rule.get(peers)
            or any(
                _peer_matches(peer, other, p["metadata"].get("namespace", "sosohappy"))
                for peer in rule[peers]
            )
        )
        for p in guarding
        for rule in p["spec"].get(direction.lower()) or []
    )


def egress_isolated(policies: Iterable[Doc], pod: Pod) -> bool:
    """Whether some policy restricts where ``pod`` may connect."""
    return any(_guards(p, pod, "Egress") for p in policies)


def ingress_isolated(policies: Iterable[Doc], pod: Pod) -> bool:
    """Whether some policy restricts who may connect to ``pod``."""
    return any(_guards(p, pod, "Ingress") for p in policies)
