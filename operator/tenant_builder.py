"""Everything a Tenant gets (pure: spec in, manifests out): its labelled Namespace, a ResourceQuota and a
LimitRange (pods, agents, CPU and memory), the NetworkPolicies that isolate it, the RBAC for its groups, the
RoleBindings that give the operator and the gateway their rights there (and nowhere else), the worker
ServiceAccount and the namespace's own worker token (derived from the platform's root, never the root)."""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.tenant import TenantSpec
from voxfleet.api.voiceagent import GROUP, PLURAL
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.operator.ownership import MANAGED, Owner, metadata
from voxfleet.operator.settings import OperatorSettings

ROLE = "voxfleet-tenant"
QUOTA = "voxfleet-quota"
LIMITS = "voxfleet-limits"
OPERATOR_BINDING = "voxfleet-operator"
GATEWAY_SECRETS_BINDING = "voxfleet-gateway-tenant-secrets"
# What a worker container gets when its VoiceAgent names no requests or limits (the quota on CPU and memory
# makes the apiserver refuse any pod without them): the VoiceAgent's own defaults.
DEFAULT_REQUEST = {"cpu": "500m", "memory": "512Mi"}
DEFAULT_LIMIT = {"cpu": "1", "memory": "1Gi"}
INGRESS_POLICY = "voxfleet-ingress"
EGRESS_POLICY = "voxfleet-egress"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the apiserver on every namespace

# Egress to these is denied (cluster-internal pod/service ranges, link-local incl. cloud metadata, loopback);
# the platform's outbound_allowed_cidrs are added back explicitly. IPv4-mapped IPv6 (::ffff:0:0/96) can't be
# written in a NetworkPolicy (the apiserver refuses it); the worker's outbound URL check refuses those targets.
PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "127.0.0.0/8",
              "0.0.0.0/8"]
PRIVATE_V6 = ["fc00::/7", "fe80::/10", "::1/128", "64:ff9b::/96"]


def tenant_labels(tenant: str) -> dict[str, str]:
    return {labels.NAME: labels.PART_OF_VALUE, labels.TENANT: tenant, **MANAGED}


def build_namespace(owner: Owner, namespace: str) -> dict[str, Any]:
    ns_labels = {
        **tenant_labels(owner.name),
        # Pod Security Admission refuses any pod in the namespace that isn't restricted (defence in depth).
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(namespace, None, ns_labels, owner)}


def build_resource_quota(owner: Owner, namespace: str, spec: TenantSpec) -> dict[str, Any]:
    """maxWorkers bounds pods (the namespace holds only worker pods), maxAgents bounds VoiceAgents, cpu and
    memory bound what all workers together may ask for and use (a tenant's kubectl user can't take the nodes).
    maxConcurrentSessions is not a Kubernetes resource: the gateway enforces it when it places calls."""
    quotas = spec.quotas
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(QUOTA, namespace, tenant_labels(owner.name), None),
        "spec": {"hard": {"pods": str(quotas.max_workers),
                          f"count/{PLURAL}.{GROUP}": str(quotas.max_agents),
                          "requests.cpu": quotas.cpu, "limits.cpu": quotas.cpu,
                          "requests.memory": quotas.memory, "limits.memory": quotas.memory}},
    }


_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(quantity: str) -> Decimal:
    """A Kubernetes quantity of the form the Tenant schema allows (api.voiceagent.QUANTITY) as a number."""
    number, suffix = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", quantity).groups()
    return Decimal(number) * _SUFFIX[suffix]


def _at_most(value: str, bound: str) -> str:
    """The smaller of two quantities (a default above the tenant's per-container max would make the LimitRange
    invalid)."""
    return value if parse_quantity(value) <= parse_quantity(bound) else bound


def build_limit_range(owner: Owner, namespace: str, spec: TenantSpec) -> dict[str, Any]:
    """Per container: a ceiling (maxWorkerCpu/maxWorkerMemory), so no single worker can ask for 64 cores, and
    defaults for containers that name none (the quota needs every pod to state its CPU and memory)."""
    quotas = spec.quotas
    most = {"cpu": quotas.max_worker_cpu, "memory": quotas.max_worker_memory}
    default_limit = {k: _at_most(v, most[k]) for k, v in DEFAULT_LIMIT.items()}
    default_request = {k: _at_most(v, default_limit[k]) for k, v in DEFAULT_REQUEST.items()}
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(LIMITS, namespace, tenant_labels(owner.name), None),
        "spec": {"limits": [{"type": "Container", "max": most, "default": default_limit,
                             "defaultRequest": default_request}]},
    }


def _namespace_peer(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def build_network_policies(owner: Owner, namespace: str, platform: PlatformSettings) -> list[dict[str, Any]]:
    """What may reach the tenant's workers, and what they may reach. Enforced by the cluster's CNI (a cluster
    without a NetworkPolicy-capable CNI ignores these objects)."""
    platform_ns = _namespace_peer(platform.platform_namespace)
    # Only the platform namespace (gateway, operator) reaches the worker control port; other tenants nothing.
    ingress_rules = [{"from": [platform_ns], "ports": [{"protocol": "TCP", "port": platform.worker_port}]}]
    if platform.monitoring_namespace:
        # The platform's Prometheus scrapes /metrics, which shares the control port (whose calls need the
        # namespace's worker token).
        ingress_rules.append({"from": [_namespace_peer(platform.monitoring_namespace)],
                              "ports": [{"protocol": "TCP", "port": platform.worker_port}]})
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(INGRESS_POLICY, namespace, tenant_labels(owner.name), None),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress_rules},
    }
    dns = {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    public = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_V4}},
                     {"ipBlock": {"cidr": "::/0", "except": PRIVATE_V6}}]}
    rules = [dns, {"to": [platform_ns]}, public]
    otlp_port = platform.otlp_port()
    if platform.monitoring_namespace and otlp_port is not None:
        # Spans to the platform's OTEL collector there (the OTLP endpoint's port only; a collector outside the
        # cluster is reached through the public rule).
        rules.append({"to": [_namespace_peer(platform.monitoring_namespace)],
                      "ports": [{"protocol": "TCP", "port": otlp_port}]})
    if platform.outbound_allowed_cidrs:
        rules.append({"to": [{"ipBlock": {"cidr": cidr}} for cidr in platform.outbound_allowed_cidrs]})
    egress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(EGRESS_POLICY, namespace, tenant_labels(owner.name), None),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules},
    }
    return [ingress, egress]


def build_role(owner: Owner, namespace: str) -> dict[str, Any]:
    """The tenant's groups manage VoiceAgents in their namespace, and nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(ROLE, namespace, tenant_labels(owner.name), None),
        "rules": [
            {"apiGroups": [GROUP], "resources": [PLURAL],
             "verbs": ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]},
            {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "list", "watch"]},
        ],
    }


def build_role_binding(owner: Owner, namespace: str, spec: TenantSpec) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(ROLE, namespace, tenant_labels(owner.name), None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                     for group in spec.groups],
    }


def _service_account_binding(owner: Owner, namespace: str, name: str, cluster_role: str, service_account: str,
                             platform: PlatformSettings) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(name, namespace, tenant_labels(owner.name), None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": platform.platform_namespace}],
    }


def build_operator_binding(owner: Owner, namespace: str, platform: PlatformSettings,
                           settings: OperatorSettings) -> dict[str, Any]:
    """The operator's Secret rights in this namespace only (keys and labels of the Secrets agents name, its
    worker-token Secret): it has none cluster-wide. The chart lets it bind exactly this ClusterRole."""
    return _service_account_binding(owner, namespace, OPERATOR_BINDING, settings.tenant_cluster_role,
                                    settings.service_account, platform)


def build_gateway_secrets_binding(owner: Owner, namespace: str, platform: PlatformSettings,
                                  settings: OperatorSettings) -> dict[str, Any]:
    """The gateway's tenant secrets API writes Secrets here, and only in tenant namespaces."""
    return _service_account_binding(owner, namespace, GATEWAY_SECRETS_BINDING, settings.gateway_secrets_cluster_role,
                                    settings.gateway_service_account, platform)


def build_worker_service_account(owner: Owner, namespace: str, platform: PlatformSettings) -> dict[str, Any]:
    """Pods naming a missing ServiceAccount are refused at admission; workers need no API token."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(platform.worker_service_account, namespace, tenant_labels(owner.name), None),
            "automountServiceAccountToken": False}


def build_worker_token_secret(owner: Owner, namespace: str, platform: PlatformSettings,
                              root_token: bytes) -> dict[str, Any]:
    """The token this namespace's workers accept, derived from the root: a leak opens this tenant's workers only.
    It never carries the tenant-secret label, so no VoiceAgent may name it."""
    token = token_for_namespace(root_token, namespace).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(platform.worker_token_secret, namespace, tenant_labels(owner.name), None),
        "data": {labels.WORKER_TOKEN_KEY: base64.b64encode(token).decode()},
    }


def build_tenant_objects(owner: Owner, namespace: str, spec: TenantSpec, platform: PlatformSettings,
                         settings: OperatorSettings, root_token: bytes | None) -> list[dict[str, Any]]:
    """Everything inside the tenant's namespace, in apply order (the Namespace itself is applied first; the
    operator's binding before the worker-token Secret it needs to write)."""
    objects = [build_resource_quota(owner, namespace, spec), build_limit_range(owner, namespace, spec),
               *build_network_policies(owner, namespace, platform),
               build_role(owner, namespace), build_role_binding(owner, namespace, spec),
               build_operator_binding(owner, namespace, platform, settings),
               build_gateway_secrets_binding(owner, namespace, platform, settings),
               build_worker_service_account(owner, namespace, platform)]
    if root_token is not None:
        objects.append(build_worker_token_secret(owner, namespace, platform, root_token))
    return objects
