"""The Tenants the gateway knows (cluster-scoped, watched): namespace, allowed regions and quotas by name, and
which Tenant owns which namespace.

A namespace has at most one owner. Two Tenants may claim the same one (spec.namespace, or one's default
`tenant-<name>` spelled out by another); then only the owner is a tenant here: the other's keys are refused
(403) and pods labelled with its name are no workers, so neither tenant's keys reach the other's agents,
secrets or workers. The owner is the one the operator provisioned the namespace for: a claimant the operator
refused (condition reason NamespaceTaken: the namespace already belonged to someone else) never owns it; among
the rest, one whose status.namespace the operator has written, then the oldest (creationTimestamp, then name).
That matches the operator, which provisions a namespace for the first Tenant reconciled into it and refuses
later ones, and it never moves an established namespace to a newcomer. Namespaces of the cluster and the
platform are never a tenant's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api.tenant import TenantSpec
from voxfleet.gateway.read_through import ReadThroughBudget
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import DELETED, Informer, InformerEvent

log = structlog.get_logger(__name__)

NAMESPACE_TAKEN_REASON = "NamespaceTaken"  # the operator's condition reason for a refused claim
CLUSTER_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})

OwnersListener = Callable[[set[str]], None]  # namespaces whose owner changed


@dataclass(frozen=True)
class TenantInfo:
    name: str
    namespace: str
    spec: TenantSpec


class TenantDirectory:
    def __init__(self, kube: KubeClient, *, platform_namespace: str = ""):
        self._kube = kube
        self._read_through = ReadThroughBudget()
        self.cache: Informer[dict[str, Any]] = Informer(kube, "Tenant", name="tenants")
        self.cache.add_handler(self._on_change)
        self._reserved = {platform_namespace} if platform_namespace else set()
        self._parsed: dict[str, tuple[str, TenantInfo | None]] = {}  # name -> (resourceVersion, info)
        self._owners: dict[str, str] = {}  # namespace -> owning tenant
        self._owners_listeners: list[OwnersListener] = []

    def get(self, name: str) -> TenantInfo | None:
        """The tenant, when it exists, its spec parses and it owns its namespace."""
        obj = self.cache.get("", name)
        if obj is None:
            return None
        info = self._parse(obj)
        if info is None or self._owners.get(info.namespace) != name:
            return None
        return info

    async def exists_unseen(self, name: str) -> bool:
        """True when the Tenant exists in the apiserver but the watch has not shown it yet (made a moment ago):
        its key holders are asked to retry rather than told it does not exist. Within a budget
        (gateway/read_through.py); False when over it or when the apiserver cannot say."""
        if self.cache.get("", name) is not None or not self._read_through.may_ask(name):
            return False
        try:
            found = await self._kube.get_or_none("Tenant", name)
        except Exception:  # noqa: BLE001 - cannot tell: the answer stays "not served"
            return False
        if found is None:
            self._read_through.missing(name)
        return found is not None

    def owner_of(self, namespace: str) -> str | None:
        """The Tenant whose namespace this is, or None (not a tenant namespace)."""
        return self._owners.get(namespace)

    def refusal(self, name: str) -> str | None:
        """Why an existing Tenant is not usable here, in a sentence for its key holders; None when it is. It never
        names the namespace: the key holder need not learn which namespace another tenant has."""
        obj = self.cache.get("", name)
        if obj is None:
            return None
        info = self._parse(obj)
        if info is None:
            return "its spec is invalid"
        if info.namespace in self._reserved or self._cluster_namespace(info.namespace):
            return "its namespace is reserved for the cluster or the platform"
        if self._owners.get(info.namespace) != name:
            return "its namespace belongs to another Tenant (or to someone else, as the operator found it)"
        return None

    def on_owners_changed(self, listener: OwnersListener) -> None:
        self._owners_listeners.append(listener)

    def _parse(self, obj: dict[str, Any]) -> TenantInfo | None:
        meta = obj["metadata"]
        cached = self._parsed.get(meta["name"])
        if cached is not None and cached[0] == meta.get("resourceVersion"):
            return cached[1]
        try:
            spec = TenantSpec.model_validate(obj.get("spec") or {})
            info: TenantInfo | None = TenantInfo(meta["name"], spec.namespace_for(meta["name"]), spec)
        except ValidationError as error:
            log.warning("tenant spec does not parse; its keys are refused", tenant=meta["name"],
                        errors=error.error_count())
            info = None
        self._parsed[meta["name"]] = (meta.get("resourceVersion", ""), info)
        return info

    @staticmethod
    def _cluster_namespace(namespace: str) -> bool:
        return namespace in CLUSTER_NAMESPACES or namespace.startswith("kube-")

    def _on_change(self, event: InformerEvent[dict[str, Any]]) -> None:
        if event.type == DELETED and event.old is not None:
            self._parsed.pop(event.old["metadata"]["name"], None)
        self._recompute_owners()

    def _recompute_owners(self) -> None:
        """Tenant events are rare (a platform team's edits): recompute the whole map, O(tenants)."""
        claimants: dict[str, list[tuple[dict[str, Any], TenantInfo]]] = {}
        for obj in self.cache.values():
            info = self._parse(obj)
            if info is None or info.namespace in self._reserved or self._cluster_namespace(info.namespace):
                continue
            claimants.setdefault(info.namespace, []).append((obj, info))
        owners: dict[str, str] = {}
        for namespace, claims in claimants.items():
            eligible = [(obj, info) for obj, info in claims if not _refused_by_operator(obj)]
            if eligible:
                owner = min(eligible, key=lambda claim: _precedence(claim[0], namespace))[1].name
                owners[namespace] = owner
            if len(claims) > 1:
                log.warning("several Tenants claim one namespace; only its owner's keys and workers are accepted",
                            namespace=namespace, owner=owners.get(namespace),
                            refused=sorted(info.name for _, info in claims if info.name != owners.get(namespace)))
        changed = {ns for ns in owners.keys() | self._owners.keys() if owners.get(ns) != self._owners.get(ns)}
        self._owners = owners
        if changed:
            for listener in self._owners_listeners:
                try:
                    listener(changed)
                except Exception:  # noqa: BLE001 - the directory must stay current for every request
                    log.exception("namespace-owner listener failed")


def _refused_by_operator(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("reason") == NAMESPACE_TAKEN_REASON for c in conditions)


def _precedence(obj: dict[str, Any], namespace: str) -> tuple[int, str, str]:
    """Smaller wins: confirmed by the operator first, then the oldest, then by name (a stable tie-break)."""
    meta = obj.get("metadata") or {}
    confirmed = (obj.get("status") or {}).get("namespace") == namespace
    return (0 if confirmed else 1, meta.get("creationTimestamp") or "~", meta.get("name", ""))
