"""A small evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1) ingress semantics, for tests: may `source` open
`port`/`protocol` on pod `destination`, under a set of policies?

The rules (Kubernetes docs, "Network Policies"; API reference NetworkPolicySpec / NetworkPolicyPeer):
- A pod is isolated for ingress when some policy of its namespace selects it (spec.podSelector) and lists Ingress
  in policyTypes (absent policyTypes means Ingress, plus Egress when the policy has egress rules). A pod no policy
  isolates accepts everything.
- An isolated pod accepts a connection when any rule of any policy selecting it admits it (policies only add).
- A rule admits when its `from` admits the source (absent or empty: every source) and its `ports` admit the port
  (absent or empty: every port). A port entry's protocol defaults to TCP; `port` absent means every port of that
  protocol; a named port is resolved against the destination pod's container ports; `endPort` makes a range.
- A peer is an ipBlock (cidr minus `except`) or selectors: namespaceSelector and podSelector in one peer must both
  match; podSelector alone means the policy's own namespace; namespaceSelector alone means every pod there.
- A label selector: every matchLabels pair, and every matchExpressions term (In, NotIn: value not listed or key
  absent, Exists, DoesNotExist); `{}` selects everything.
- ipBlock against a pod source: this evaluator compares the pod's IP, as the VPC CNI does (its pods have VPC
  addresses); Kubernetes leaves that implementation-defined.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]
    ip: str
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)   # container port name -> (number, protocol)


@dataclass(frozen=True)
class External:
    """A source that is not a pod (a load balancer node, the control plane's ENI): only ipBlock peers match it."""
    ip: str


def namespace_labels(namespace: str) -> dict[str, str]:
    """The label every namespace carries (API server, Kubernetes >= 1.22)."""
    return {NAMESPACE_NAME_LABEL: namespace}


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for term in selector.get("matchExpressions") or []:
        key, operator, values = term["key"], term["operator"], term.get("values") or []
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
        if not ok:
            return False
    return True


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _peer_admits(peer: Mapping[str, Any], policy_namespace: str, source: Pod | External,
                 namespaces: Mapping[str, Mapping[str, str]]) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(source.ip)
        return (address in ipaddress.ip_network(block["cidr"])
                and not any(address in ipaddress.ip_network(e) for e in block.get("except") or []))
    if not isinstance(source, Pod):
        return False
    if "namespaceSelector" in peer:
        ns_labels = namespaces.get(source.namespace, namespace_labels(source.namespace))
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif source.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), source.labels)


def _port_admits(entry: Mapping[str, Any], destination: Pod, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        named = destination.ports.get(wanted)
        return named is not None and named == (port, protocol)
    return wanted <= port <= entry.get("endPort", wanted)


def admits(policies: Iterable[Mapping[str, Any]], source: Pod | External, destination: Pod, port: int,
           protocol: str = "TCP", namespaces: Mapping[str, Mapping[str, str]] | None = None) -> bool:
    """True when `policies` let `source` connect to `destination` on `port`/`protocol`."""
    namespaces = namespaces or {}
    selecting = [p for p in policies if p.get("kind") == "NetworkPolicy"
                 and p["metadata"].get("namespace") == destination.namespace and "Ingress" in policy_types(p)
                 and selects(p["spec"].get("podSelector") or {}, destination.labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            peers, ports = rule.get("from") or [], rule.get("ports") or []
            if ((not peers or any(_peer_admits(peer, destination.namespace, source, namespaces) for peer in peers))
                    and (not ports or any(_port_admits(e, destination, port, protocol) for e in ports))):
                return True
    return False
