"""What the operator knows about the cluster: Tenants and VoiceAgents (fed by kopf), and projections of worker
Pods, pool Deployments, Nodes and every other object it manages (fed by its own watches), with the indexes the
reconcilers and the scaler look things up by.

Secrets are different: the operator has no cluster-wide right on them. It watches the platform's root worker
token in the platform namespace (a Role there), and the Secrets of each tenant namespace through the RoleBinding
it makes there (SecretWatches). Of a tenant Secret it keeps only its keys and whether it carries the tenant-secret
label; values are dropped as each object arrives."""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.operator.kube_client import KubeClient, NotFound
from voxfleet.operator.object_applier import version_of
from voxfleet.operator.ownership import MANAGED, MANAGED_SELECTOR
from voxfleet.operator.watch_cache import Key, WatchCache

PoolKey = tuple[str, str, str]  # (namespace, agent, region)
AgentKey = tuple[str, str]  # (namespace, agent)
# Deployments have their own, fuller watch (status figures); these are watched only to spot drift.
# Secrets are watched per tenant namespace (SecretWatches): the operator may not list them cluster-wide.
MANAGED_KINDS = ("Namespace", "PodDisruptionBudget", "ConfigMap", "Service", "ResourceQuota", "LimitRange",
                 "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount")


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    uid: str
    agent: str
    region: str
    ip: str | None
    ready: bool
    terminating: bool
    config_hash: str
    deletion_cost: str | None

    @property
    def pool(self) -> PoolKey:
        return self.namespace, self.agent, self.region


def project_pod(obj: dict[str, Any]) -> PodView:
    meta, status = obj["metadata"], obj.get("status") or {}
    pod_labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    ready = _condition(obj, "Ready")
    return PodView(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        agent=pod_labels.get(labels.AGENT, ""), region=pod_labels.get(labels.REGION, ""),
        ip=status.get("podIP") or None, ready=bool(ready and ready.get("status") == "True"),
        terminating=bool(meta.get("deletionTimestamp")) or status.get("phase") in ("Succeeded", "Failed"),
        config_hash=annotations.get(labels.CONFIG_HASH, ""),
        deletion_cost=annotations.get(labels.POD_DELETION_COST))


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    agent: str
    region: str
    generation: int
    replicas: int
    observed_generation: int
    ready: int
    updated: int
    available: int
    total: int  # status.replicas: pods of every ReplicaSet, terminating ones excluded
    failure: str | None  # the ReplicaFailure message (e.g. exceeded quota)

    @property
    def updated_current(self) -> int:
        """Pods on the current template, 0 until the controller has seen the latest spec."""
        return self.updated if self.observed_generation >= self.generation else 0

    @property
    def rolled_out(self) -> bool:
        """`kubectl rollout status` says done: only current-template pods left, all of them available."""
        return (self.observed_generation >= self.generation and self.updated >= self.replicas
                and self.total == self.updated and self.available >= self.updated)


def project_deployment(obj: dict[str, Any]) -> DeploymentView:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    failure = _condition(obj, "ReplicaFailure")
    dep_labels = meta.get("labels") or {}
    return DeploymentView(
        namespace=meta["namespace"], name=meta["name"], agent=dep_labels.get(labels.AGENT, ""),
        region=dep_labels.get(labels.REGION, ""), generation=int(meta.get("generation") or 0),
        replicas=int(spec.get("replicas") or 0), observed_generation=int(status.get("observedGeneration") or 0),
        ready=int(status.get("readyReplicas") or 0), updated=int(status.get("updatedReplicas") or 0),
        available=int(status.get("availableReplicas") or 0), total=int(status.get("replicas") or 0),
        failure=failure.get("message") if failure and failure.get("status") == "True" else None)


@dataclass(frozen=True)
class ManagedView:
    """Any object we manage, reduced to who owns it and which version of it exists (for drift detection)."""

    kind: str
    namespace: str
    name: str
    tenant: str
    agent: str
    version: str  # object_applier.version_of: changes with edits, not with status writes


def managed_projector(kind: str) -> Callable[[dict[str, Any]], ManagedView]:
    def project(obj: dict[str, Any]) -> ManagedView:
        meta = obj["metadata"]
        obj_labels = meta.get("labels") or {}
        version = version_of(obj)
        return ManagedView(kind, meta.get("namespace") or "", meta["name"], obj_labels.get(labels.TENANT, ""),
                           obj_labels.get(labels.AGENT, ""), version)
    return project


@dataclass(frozen=True)
class NodeView:
    name: str
    region: str
    labels: tuple[tuple[str, str], ...]
    schedulable: bool


def project_node(obj: dict[str, Any]) -> NodeView:
    meta = obj["metadata"]
    node_labels = meta.get("labels") or {}
    # Cordoned nodes don't count; a NotReady one still does: a heartbeat blip is no "region without nodes"
    # (and must not start a reconcile of every agent).
    schedulable = not (obj.get("spec") or {}).get("unschedulable")
    return NodeView(meta["name"], node_labels.get(labels.NODE_REGION, ""), tuple(sorted(node_labels.items())),
                    schedulable)


@dataclass(frozen=True)
class SecretView:
    """A Secret without its values: its keys, whether a VoiceAgent may name it, and (for the worker-token Secret
    the operator writes) its drift-detection projection."""

    namespace: str
    name: str
    keys: frozenset[str]
    tenant_secret: bool  # labels.TENANT_SECRET == "true": written through the gateway's secrets API
    managed: ManagedView | None


_project_managed_secret = managed_projector("Secret")


def project_secret(obj: dict[str, Any]) -> SecretView:
    meta = obj["metadata"]
    secret_labels = meta.get("labels") or {}
    ours = all(secret_labels.get(k) == v for k, v in MANAGED.items()) and bool(secret_labels.get(labels.TENANT))
    return SecretView(namespace=meta.get("namespace") or "", name=meta["name"],
                      keys=frozenset(obj.get("data") or {}) | frozenset(obj.get("stringData") or {}),
                      tenant_secret=secret_labels.get(labels.TENANT_SECRET) == labels.TENANT_SECRET_VALUE,
                      managed=_project_managed_secret(obj) if ours else None)


class SecretWatches:
    """One Secret watch per tenant namespace, started once the operator's RoleBinding there is applied (so the
    list is allowed) and stopped when the Tenant goes. Changes reach `on_change` as SecretView pairs."""

    def __init__(self, client: KubeClient, on_change: Callable[[Key, Any, Any], None]):
        self.client = client
        self.on_change = on_change
        self.caches: dict[str, WatchCache[SecretView]] = {}
        self.tasks: dict[str, asyncio.Task] = {}

    def watch(self, namespace: str) -> None:
        if namespace in self.caches:
            return
        cache = WatchCache(self.client, "Secret", project_secret, namespace=namespace, on_change=self.on_change)
        self.caches[namespace] = cache
        self.tasks[namespace] = asyncio.create_task(cache.run(), name=f"watch Secrets in {namespace}")

    def unwatch(self, namespace: str) -> None:
        self.caches.pop(namespace, None)
        task = self.tasks.pop(namespace, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        for namespace in list(self.caches):
            self.unwatch(namespace)
        await asyncio.gather(*tasks, return_exceptions=True)

    def get(self, namespace: str, name: str) -> SecretView | None:
        cache = self.caches.get(namespace)
        return cache.get(namespace, name) if cache is not None else None

    async def views(self, namespace: str, names: set[str]) -> dict[str, SecretView | None]:
        """name -> SecretView (None: no such Secret): from the namespace's watch once it has listed, else read
        one by one (a fresh operator, or a reconcile that runs before the watch's first list)."""
        cache = self.caches.get(namespace)
        if cache is not None and cache.synced.is_set():
            return {name: cache.get(namespace, name) for name in names}
        found: dict[str, SecretView | None] = {}
        for name in sorted(names):
            try:
                found[name] = project_secret(await self.client.get("Secret", name, namespace))
            except NotFound:
                found[name] = None
        return found


def project_token(obj: dict[str, Any]) -> bytes | None:
    value = (obj.get("data") or {}).get(labels.WORKER_TOKEN_KEY)
    return base64.b64decode(value) if value else None


class Grouped:
    """An index: group -> {object key: projection}, kept current from a watch's changes."""

    def __init__(self, group_of: Callable[[Any], Any]):
        self.group_of = group_of
        self.groups: dict[Any, dict[Key, Any]] = defaultdict(dict)

    def update(self, key: Key, old: Any, new: Any) -> None:
        if old is not None:
            members = self.groups.get(self.group_of(old))
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self.groups[self.group_of(old)]
        if new is not None:
            self.groups[self.group_of(new)][key] = new

    def get(self, group: Any) -> list[Any]:
        return list(self.groups.get(group, {}).values())


class ClusterView:
    def __init__(self, client: KubeClient, platform: PlatformSettings):
        self.platform = platform
        self.tenants: dict[str, dict[str, Any]] = {}
        self.agents: dict[AgentKey, dict[str, Any]] = {}
        self.pods_by_pool = Grouped(lambda pod: pod.pool)
        self.deployments_by_agent = Grouped(lambda dep: (dep.namespace, dep.agent))
        self.listeners: list[Callable[[str, Key, Any, Any], None]] = []  # (kind, key, old, new)

        def relay(kind: str, index: Grouped | None = None):
            def changed(key: Key, old: Any, new: Any) -> None:
                if index is not None:
                    index.update(key, old, new)
                for listener in self.listeners:
                    listener(kind, key, old, new)
            return changed

        self.pods: WatchCache[PodView] = WatchCache(client, "Pod", project_pod, label_selector=labels.WORKER_SELECTOR,
                                                    on_change=relay("Pod", self.pods_by_pool))
        self.deployments: WatchCache[DeploymentView] = WatchCache(
            client, "Deployment", project_deployment, label_selector=f"{MANAGED_SELECTOR},{labels.AGENT}",
            on_change=relay("Deployment", self.deployments_by_agent))
        self.nodes: WatchCache[NodeView] = WatchCache(client, "Node", project_node, on_change=relay("Node"))
        self.managed: dict[str, WatchCache[ManagedView]] = {
            kind: WatchCache(client, kind, managed_projector(kind),
                             label_selector=f"{MANAGED_SELECTOR},{labels.TENANT}", on_change=relay(f"Managed{kind}"))
            for kind in MANAGED_KINDS}
        # The root worker token: only this one Secret of the platform namespace (a Role there, by name).
        self.token: WatchCache[bytes | None] = WatchCache(
            client, "Secret", project_token, namespace=platform.platform_namespace,
            field_selector=f"metadata.name={platform.worker_token_secret}", on_change=relay("WorkerToken"))
        managed_secret = relay("ManagedSecret")
        tenant_secret = relay("TenantSecret")

        def secret_changed(key: Key, old: SecretView | None, new: SecretView | None) -> None:
            if (old and old.managed) or (new and new.managed):
                managed_secret(key, old.managed if old else None, new.managed if new else None)
            tenant_secret(key, old, new)

        self.secrets = SecretWatches(client, secret_changed)

    def caches(self) -> list[WatchCache]:
        return [self.pods, self.deployments, self.nodes, self.token, *self.managed.values()]

    # --- lookups --------------------------------------------------------------------------------------------

    def tenant_for_namespace(self, namespace: str) -> dict[str, Any] | None:
        for tenant in self.tenants.values():
            if tenant_namespace(tenant) == namespace:
                return tenant
        return None

    def agents_in(self, namespace: str) -> list[dict[str, Any]]:
        return [body for (ns, _), body in self.agents.items() if ns == namespace]

    def pool_pods(self, pool: PoolKey) -> list[PodView]:
        return self.pods_by_pool.get(pool)

    def agent_deployments(self, namespace: str, agent: str) -> list[DeploymentView]:
        return self.deployments_by_agent.get((namespace, agent))

    def worker_token(self) -> bytes | None:
        item = self.token.get(self.platform.platform_namespace, self.platform.worker_token_secret)
        return item

    def regions_with_nodes(self) -> set[str]:
        """Regions with at least one schedulable node that the platform's worker placement selects."""
        wanted = set(self.platform.worker_node_selector.items())
        return {node.region for node in self.nodes.values()
                if node.region and node.schedulable and wanted <= set(node.labels)}

    def managed_version(self, kind: str, namespace: str, name: str) -> str | None:
        if kind == "Deployment":
            deployment = self.deployments.get(namespace, name)
            return str(deployment.generation) if deployment is not None else None
        if kind == "Secret":
            secret = self.secrets.get(namespace, name)
            return secret.managed.version if secret is not None and secret.managed is not None else None
        cache = self.managed.get(kind)
        item = cache.get(namespace, name) if cache is not None else None
        return item.version if item is not None else None


def tenant_namespace(body: dict[str, Any]) -> str:
    spec = body.get("spec") or {}
    return spec.get("namespace") or f"tenant-{body['metadata']['name']}"
