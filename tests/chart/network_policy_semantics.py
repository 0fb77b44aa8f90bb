"""Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), evaluated in Python for a test world without a CNI.

The test world has no CNI, so nothing enforces NetworkPolicies there; in a cluster the CNI does. To still prove a
path is open or shut, tests read the real policy objects from the apiserver and ask this evaluator, which follows
the API's documented rules:

- A pod is isolated for ingress (egress) when some policy in its namespace selects it (spec.podSelector) and lists
  Ingress (Egress) in policyTypes; policyTypes defaults to [Ingress], plus Egress when spec.egress is present.
  A non-isolated direction allows everything.
- An isolated direction allows a connection when any rule of any selecting policy allows it (policies add up);
  a connection needs both the source's egress and the destination's ingress.
- A rule with no (or empty) from/to matches every peer; with no (or empty) ports, every port. A port is a number
  or a named container port of the destination, with an optional endPort; protocol defaults to TCP.
- A peer: podSelector alone = those pods in the policy's namespace; namespaceSelector alone = every pod of the
  matching namespaces; both = those pods in those namespaces; ipBlock = addresses in cidr minus except.
- Label selectors: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist), ANDed; {} matches all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace set) or an address outside the cluster (namespace None: only ipBlock peers match it)."""

    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    named_ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str

    def __bool__(self) -> bool:
        return self.allowed


def selector_matches(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def _policy_types(policy: Mapping) -> list[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


class NetworkPolicies:
    """``policies``: NetworkPolicy objects (as the apiserver returns them); ``namespace_labels``: every namespace's
    labels (namespaceSelector matches on them, e.g. kubernetes.io/metadata.name)."""

    def __init__(self, policies: list[Mapping], namespace_labels: Mapping[str, Mapping[str, str]]):
        self.policies = policies
        self.namespace_labels = namespace_labels

    def _selecting(self, pod: Endpoint, direction: str) -> list[Mapping]:
        if pod.namespace is None:
            return []  # not a pod: no policy isolates it
        return [p for p in self.policies
                if p["metadata"]["namespace"] == pod.namespace and direction in _policy_types(p)
                and selector_matches(p["spec"].get("podSelector") or {}, pod.labels)]

    def _peer_matches(self, peer: Mapping, policy_namespace: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            address = ipaddress.ip_address(other.ip)
            block = peer["ipBlock"]
            network = ipaddress.ip_network(block["cidr"], strict=False)
            if address.version != network.version or address not in network:
                return False
            return not any(address in ipaddress.ip_network(cidr, strict=False)
                           for cidr in block.get("except") or []
                           if ipaddress.ip_network(cidr, strict=False).version == address.version)
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not selector_matches(peer["namespaceSelector"], self.namespace_labels.get(other.namespace, {})):
                return False
        elif other.namespace != policy_namespace:
            return False
        return "podSelector" not in peer or selector_matches(peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule_port: Mapping, destination: Endpoint, port: int, protocol: str) -> bool:
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        if "port" not in rule_port:
            return True
        wanted = rule_port["port"]
        if isinstance(wanted, str) and not wanted.isdigit():
            return destination.named_ports.get(wanted) == port
        first = int(wanted)
        return first <= port <= int(rule_port.get("endPort", first))

    def _direction_allows(self, pod: Endpoint, other: Endpoint, destination: Endpoint, port: int, protocol: str,
                          direction: str) -> Verdict:
        selecting = self._selecting(pod, direction)
        if not selecting:
            return Verdict(True, f"{direction.lower()} of {pod.namespace or pod.ip} not isolated")
        peers_key, rules_key = ("from", "ingress") if direction == "Ingress" else ("to", "egress")
        for policy in selecting:
            for index, rule in enumerate(policy["spec"].get(rules_key) or []):
                peers = rule.get(peers_key) or []
                ports = rule.get("ports") or []
                if peers and not any(self._peer_matches(peer, policy["metadata"]["namespace"], other)
                                     for peer in peers):
                    continue
                if ports and not any(self._port_matches(p, destination, port, protocol) for p in ports):
                    continue
                return Verdict(True, f"{policy['metadata']['namespace']}/{policy['metadata']['name']} "
                                     f"{rules_key}[{index}]")
        names = ", ".join(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in selecting)
        return Verdict(False, f"{direction.lower()} of {pod.namespace} isolated by {names}; no rule admits it")

    def allows(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Whether ``source`` may open a connection to ``destination`` on ``port``: its egress and the
        destination's ingress must both allow it."""
        egress = self._direction_allows(source, destination, destination, port, protocol, "Egress")
        if not egress:
            return egress
        ingress = self._direction_allows(destination, source, destination, port, protocol, "Ingress")
        if not ingress:
            return ingress
        return Verdict(True, f"egress: {egress.why}; ingress: {ingress.why}")
