"""The NetworkPolicy evaluator the monitoring test judges paths with, against the rules of the API reference
(https://kubernetes.io/docs/concepts/services-networking/network-policies/): isolation per direction, rules that
add up, the AND of namespaceSelector+podSelector in one peer versus the OR of two peers, ports by number, name and
range, ipBlock with except, and the default policyTypes."""

from __future__ import annotations

from .network_policy_semantics import Endpoint, NetworkPolicies

NAMESPACES = {name: {"kubernetes.io/metadata.name": name, **extra} for name, extra in
              (("tenant", {}), ("monitoring", {"team": "obs"}), ("other", {}), ("platform", {}))}
WORKER = Endpoint(ip="10.1.0.5", namespace="tenant", labels={"app": "worker"}, named_ports={"control": 8080})
PROM = Endpoint(ip="10.2.0.7", namespace="monitoring", labels={"app": "prometheus"})
OTHER = Endpoint(ip="10.3.0.9", namespace="other", labels={"app": "prometheus"})
INTERNET = Endpoint(ip="93.184.216.34")


def _policy(namespace: str, spec: dict, name: str = "p") -> dict:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def _ns(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def test_no_policy_allows_everything_and_one_policy_isolates_its_direction():
    assert NetworkPolicies([], NAMESPACES).allows(OTHER, WORKER, 8080)
    deny_ingress = _policy("tenant", {"podSelector": {}})  # policyTypes defaults to [Ingress]
    policies = NetworkPolicies([deny_ingress], NAMESPACES)
    assert not policies.allows(OTHER, WORKER, 8080)
    assert policies.allows(WORKER, OTHER, 8080)  # egress stays open


def test_rules_add_up_across_policies_and_ports_match_by_number_name_and_range():
    policies = NetworkPolicies([
        _policy("tenant", {"podSelector": {}, "ingress": [{"from": [_ns("platform")], "ports": [{"port": 8080}]}]}),
        _policy("tenant", {"podSelector": {"matchLabels": {"app": "worker"}},
                           "ingress": [{"from": [_ns("monitoring")], "ports": [{"port": "control"}]}]}, "scrape"),
    ], NAMESPACES)
    assert policies.allows(PROM, WORKER, 8080)
    assert not policies.allows(PROM, WORKER, 9090)
    assert not policies.allows(OTHER, WORKER, 8080)
    ranged = NetworkPolicies([_policy("tenant", {"podSelector": {}, "ingress": [
        {"ports": [{"port": 9000, "endPort": 9010}, {"protocol": "UDP", "port": 8080}]}]})], NAMESPACES)
    assert ranged.allows(OTHER, WORKER, 9005) and not ranged.allows(OTHER, WORKER, 9011)
    assert not ranged.allows(OTHER, WORKER, 8080) and ranged.allows(OTHER, WORKER, 8080, "UDP")


def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or():
    both = {"namespaceSelector": {"matchLabels": {"team": "obs"}}, "podSelector": {"matchLabels": {"app": "grafana"}}}
    policies = NetworkPolicies([_policy("tenant", {"podSelector": {}, "ingress": [{"from": [both]}]})], NAMESPACES)
    assert not policies.allows(PROM, WORKER, 8080)  # right namespace, wrong pod
    either = [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}, {"podSelector": {"matchLabels": {"app": "x"}}}]
    policies = NetworkPolicies([_policy("tenant", {"podSelector": {}, "ingress": [{"from": either}]})], NAMESPACES)
    assert policies.allows(PROM, WORKER, 8080)
    # A podSelector alone means pods of the policy's own namespace.
    assert not policies.allows(Endpoint(ip="10.3.0.1", namespace="other", labels={"app": "x"}), WORKER, 8080)
    assert policies.allows(Endpoint(ip="10.1.0.1", namespace="tenant", labels={"app": "x"}), WORKER, 8080)


def test_egress_ip_blocks_with_except_and_expressions():
    egress = _policy("tenant", {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                       "values": ["worker"]}]},
                                "policyTypes": ["Egress"],
                                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
                                           {"to": [_ns("monitoring")], "ports": [{"port": 4318}]}]})
    policies = NetworkPolicies([egress], NAMESPACES)
    assert policies.allows(WORKER, INTERNET, 443)
    assert not policies.allows(WORKER, OTHER, 4318)  # 10.3.0.9 is in the except
    assert policies.allows(WORKER, PROM, 4318) and not policies.allows(WORKER, PROM, 4317)
    unselected = Endpoint(ip="10.1.0.6", namespace="tenant", labels={"app": "batch"})
    assert policies.allows(unselected, OTHER, 4318)  # the policy doesn't select it
