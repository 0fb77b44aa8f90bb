"""Everything a Tenant gets (pure: spec in, manifests out): its labelled Namespace, a ResourceQuota, the
NetworkPolicies that isolate it, the RBAC for its groups, the worker ServiceAccount and the worker-token Secret
copied in for its pools."""

from __future__ import annotations

import base64
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.tenant import TenantSpec
from voxfleet.api.voiceagent import GROUP, PLURAL
from voxfleet.operator.ownership import MANAGED, Owner, metadata

ROLE = "voxfleet-tenant"
QUOTA = "voxfleet-quota"
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
    """maxWorkers bounds pods (the namespace holds only worker pods), maxAgents bounds VoiceAgents.
    maxConcurrentSessions is not a Kubernetes resource: the gateway enforces it when it places calls."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(QUOTA, namespace, tenant_labels(owner.name), None),
        "spec": {"hard": {"pods": str(spec.quotas.max_workers),
                          f"count/{PLURAL}.{GROUP}": str(spec.quotas.max_agents)}},
    }


def build_network_policies(owner: Owner, namespace: str, platform: PlatformSettings) -> list[dict[str, Any]]:
    platform_ns = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: platform.platform_namespace}}}
    # Only the platform namespace (gateway, operator) reaches the worker control port; other tenants nothing.
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(INGRESS_POLICY, namespace, tenant_labels(owner.name), None),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [platform_ns],
                              "ports": [{"protocol": "TCP", "port": platform.worker_port}]}]},
    }
    dns = {"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "kube-system"}},
                   "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
           "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    public = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_V4}},
                     {"ipBlock": {"cidr": "::/0", "except": PRIVATE_V6}}]}
    rules = [dns, {"to": [platform_ns]}, public]
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


def build_worker_service_account(owner: Owner, namespace: str, platform: PlatformSettings) -> dict[str, Any]:
    """Pods naming a missing ServiceAccount are refused at admission; workers need no API token."""
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(platform.worker_service_account, namespace, tenant_labels(owner.name), None),
            "automountServiceAccountToken": False}


def build_worker_token_secret(owner: Owner, namespace: str, platform: PlatformSettings,
                              token: bytes) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(platform.worker_token_secret, namespace, tenant_labels(owner.name), None),
        "data": {labels.WORKER_TOKEN_KEY: base64.b64encode(token).decode()},
    }


def build_tenant_objects(owner: Owner, namespace: str, spec: TenantSpec, platform: PlatformSettings,
                         token: bytes | None) -> list[dict[str, Any]]:
    """Everything inside the tenant's namespace, in apply order (the Namespace itself is applied first)."""
    objects = [build_resource_quota(owner, namespace, spec), *build_network_policies(owner, namespace, platform),
               build_role(owner, namespace), build_role_binding(owner, namespace, spec),
               build_worker_service_account(owner, namespace, platform)]
    if token is not None:
        objects.append(build_worker_token_secret(owner, namespace, platform, token))
    return objects
