"""Where a kind of object lives in the REST API: api version, plural, namespaced or not.

Every component addresses objects by kind ("Pod", "VoiceAgent") through `KINDS`; a kind this table does not know
is described once with `ResourceType(...)` and passed wherever a kind name is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class ResourceType:
    """One resource of the REST API, e.g. ResourceType("apps/v1", "deployments", True, "Deployment")."""

    api_version: str  # "v1" for the core group, else "group/version"
    plural: str
    namespaced: bool
    kind: str = ""

    @property
    def prefix(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
        """Collection path (no name; all namespaces when namespace is None) or object path."""
        path = self.prefix
        if self.namespaced and namespace:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{self.plural}"
        if name:
            path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
        return path


def _kinds(*rows: tuple[str, str, str, bool]) -> dict[str, ResourceType]:
    return {kind: ResourceType(api_version, plural, namespaced, kind) for kind, api_version, plural, namespaced in rows}


KINDS: dict[str, ResourceType] = _kinds(
    ("Namespace", "v1", "namespaces", False),
    ("Node", "v1", "nodes", False),
    ("Pod", "v1", "pods", True),
    ("Secret", "v1", "secrets", True),
    ("ConfigMap", "v1", "configmaps", True),
    ("Service", "v1", "services", True),
    ("Endpoints", "v1", "endpoints", True),
    ("ServiceAccount", "v1", "serviceaccounts", True),
    ("ResourceQuota", "v1", "resourcequotas", True),
    ("LimitRange", "v1", "limitranges", True),
    ("Event", "v1", "events", True),
    ("PersistentVolumeClaim", "v1", "persistentvolumeclaims", True),
    ("Deployment", "apps/v1", "deployments", True),
    ("StatefulSet", "apps/v1", "statefulsets", True),
    ("Job", "batch/v1", "jobs", True),
    ("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", True),
    ("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", True),
    ("Role", "rbac.authorization.k8s.io/v1", "roles", True),
    ("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("Lease", "coordination.k8s.io/v1", "leases", True),
    ("CustomResourceDefinition", "apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    ("ValidatingAdmissionPolicy", "admissionregistration.k8s.io/v1", "validatingadmissionpolicies", False),
    ("ValidatingAdmissionPolicyBinding", "admissionregistration.k8s.io/v1", "validatingadmissionpolicybindings",
     False),
    ("FlowSchema", "flowcontrol.apiserver.k8s.io/v1", "flowschemas", False),
    ("PriorityLevelConfiguration", "flowcontrol.apiserver.k8s.io/v1", "prioritylevelconfigurations", False),
    ("SelfSubjectAccessReview", "authorization.k8s.io/v1", "selfsubjectaccessreviews", False),
    ("SubjectAccessReview", "authorization.k8s.io/v1", "subjectaccessreviews", False),
    ("Tenant", "voxfleet.dev/v1alpha1", "tenants", False),
    ("VoiceAgent", "voxfleet.dev/v1alpha1", "voiceagents", True),
)

Kind = str | ResourceType


def resource_type(kind: Kind) -> ResourceType:
    """The ResourceType of a kind name in KINDS (KeyError names it otherwise), or the ResourceType itself."""
    if isinstance(kind, ResourceType):
        return kind
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"kind {kind!r} is not in voxfleet.kube.KINDS: pass a ResourceType") from None


def resource_path(kind: Kind, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
    return resource_type(kind).path(namespace, name, subresource)


def object_path(manifest: dict[str, Any], subresource: str = "") -> str:
    """The object path of a manifest, from its kind (or apiVersion+kind for a kind KINDS does not know)."""
    meta = manifest["metadata"]
    kind = manifest["kind"]
    if kind in KINDS:
        resource = KINDS[kind]
    else:
        raise KeyError(f"kind {kind!r} is not in voxfleet.kube.KINDS: use KubeClient.request with a path")
    return resource.path(meta.get("namespace"), meta["name"], subresource)


def object_key(obj: dict[str, Any]) -> tuple[str, str]:
    """(namespace or "", name): how caches key objects."""
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""
