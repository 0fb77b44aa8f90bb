"""What the operator knows about the cluster: one informer (voxfleet.kube.informer) per kind it reads, and the
lookups the reconcilers and the scaler use. Tenants and VoiceAgents are kept as objects (without managedFields);
worker Pods, pool Deployments, Nodes and every other object it manages as small projections, selected by the
apiserver (label selectors), with indexes for the lookups made on every reconcile and scaling round.

Secrets are different: the operator has no cluster-wide right on them. It watches the platform's root worker
token in the platform namespace (a Role there), and the Secrets of each tenant namespace through the RoleBinding
it makes there (SecretWatches). Of a tenant Secret it keeps only its keys and whether it carries the tenant-secret
label; values are dropped as each object arrives."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import NotFound
from voxfleet.kube.informer import RESYNC, Informer, InformerEvent, by_namespace
from voxfleet.operator.object_applier import version_of
from voxfleet.operator.ownership import MANAGED, MANAGED_SELECTOR

Key = tuple[str, str]  # (namespace or "", name): how informers key objects
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
    node: str = ""  # spec.nodeName ("" until scheduled)
    safe_to_evict: str | None = None  # labels.SAFE_TO_EVICT as the pod carries it
    autoscaler_safe_to_evict: str | None = None  # labels.AUTOSCALER_SAFE_TO_EVICT as the pod carries it
    # Whether every container runs, and how often they restarted: a worker's calls live in its process, so a
    # process that ended took them with it (the eviction guard reads these).
    running: bool = True
    restarts: int = 0

    @property
    def pool(self) -> PoolKey:
        return self.namespace, self.agent, self.region


def project_pod(obj: dict[str, Any]) -> PodView:
    meta, status = obj["metadata"], obj.get("status") or {}
    pod_labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    ready = _condition(obj, "Ready")
    containers = status.get("containerStatuses") or []
    return PodView(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        agent=pod_labels.get(labels.AGENT, ""), region=pod_labels.get(labels.REGION, ""),
        ip=status.get("podIP") or None, ready=bool(ready and ready.get("status") == "True"),
        terminating=bool(meta.get("deletionTimestamp")) or status.get("phase") in ("Succeeded", "Failed"),
        config_hash=annotations.get(labels.CONFIG_HASH, ""),
        deletion_cost=annotations.get(labels.POD_DELETION_COST),
        node=(obj.get("spec") or {}).get("nodeName") or "", safe_to_evict=pod_labels.get(labels.SAFE_TO_EVICT),
        autoscaler_safe_to_evict=annotations.get(labels.AUTOSCALER_SAFE_TO_EVICT),
        running=bool(containers) and all("running" in (c.get("state") or {}) for c in containers),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers))


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
    config_hash: str = ""  # the worker config its pod template runs (labels.CONFIG_HASH)

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
        failure=failure.get("message") if failure and failure.get("status") == "True" else None,
        config_hash=((((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {})
                     .get(labels.CONFIG_HASH, "")))


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


# Taints that say a node is about to go, before any eviction: the cluster autoscaler's scale-down and Karpenter's
# disruption (both taint first, then evict). A cordon (`kubectl drain` starts with one) sets spec.unschedulable.
LEAVING_TAINTS = frozenset({"ToBeDeletedByClusterAutoscaler", "karpenter.sh/disrupted"})


@dataclass(frozen=True)
class NodeView:
    name: str
    region: str
    labels: tuple[tuple[str, str], ...]
    schedulable: bool
    leaving: bool = False  # cordoned, or tainted by an autoscaler that is about to remove it


def project_node(obj: dict[str, Any]) -> NodeView:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    node_labels = meta.get("labels") or {}
    # Cordoned nodes don't count; a NotReady one still does: a heartbeat blip is no "region without nodes"
    # (and must not start a reconcile of every agent).
    schedulable = not spec.get("unschedulable")
    leaving = not schedulable or any(t.get("key") in LEAVING_TAINTS and t.get("effect") == "NoSchedule"
                                     for t in spec.get("taints") or [])
    return NodeView(meta["name"], node_labels.get(labels.NODE_REGION, ""), tuple(sorted(node_labels.items())),
                    schedulable, leaving)


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


def custom_object_projector(kind: str, api_version: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A Tenant or VoiceAgent as the reconcilers read it: the whole object but its managedFields (the largest
    part of a stored object, and nothing the operator reads), with the apiVersion and kind list items lack."""

    def project(obj: dict[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
        return {**obj, "apiVersion": obj.get("apiVersion") or api_version, "kind": obj.get("kind") or kind,
                "metadata": meta}
    return project


def pool_index(pool: PoolKey) -> str:
    return "/".join(pool)  # namespaces, agents and regions are DNS labels: "/" separates them unambiguously


def agent_index(namespace: str, agent: str) -> str:
    return f"{namespace}/{agent}"


class SecretWatches:
    """One Secret informer per tenant namespace, started once the operator's RoleBinding there is applied (so the
    list is allowed) and stopped when the Tenant goes. Changes reach `on_change` as SecretView pairs."""

    def __init__(self, client: KubeClient, on_change: Callable[[InformerEvent[Any]], None]):
        self.client = client
        self.on_change = on_change
        self.informers: dict[str, Informer[SecretView]] = {}

    def watch(self, namespace: str) -> None:
        if namespace in self.informers:
            return
        informer: Informer[SecretView] = Informer(self.client, "Secret", namespace=namespace, transform=project_secret,
                                                  name=f"secrets/{namespace}")
        informer.add_handler(self.on_change)
        self.informers[namespace] = informer
        informer.start()

    async def unwatch(self, namespace: str) -> None:
        informer = self.informers.pop(namespace, None)
        if informer is not None:
            await informer.stop()

    async def stop(self) -> None:
        informers = list(self.informers.values())
        self.informers.clear()
        for informer in informers:
            await informer.stop()

    def get(self, namespace: str, name: str) -> SecretView | None:
        informer = self.informers.get(namespace)
        return informer.get(namespace, name) if informer is not None else None

    async def views(self, namespace: str, names: set[str]) -> dict[str, SecretView | None]:
        """name -> SecretView (None: no such Secret): from the namespace's informer once it has listed, else read
        one by one (a fresh operator, or a reconcile that runs before the informer's first list)."""
        informer = self.informers.get(namespace)
        if informer is not None and informer.has_synced:
            return {name: informer.get(namespace, name) for name in names}
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


Listener = Callable[[str, Key, Any, Any], None]  # (kind, key, old, new): new None when deleted


class ClusterView:
    def __init__(self, client: KubeClient, platform: PlatformSettings, *, tenant_selector: str = ""):
        self.platform = platform
        self.listeners: list[Listener] = []

        def relay(kind: str) -> Callable[[InformerEvent[Any]], None]:
            def changed(event: InformerEvent[Any]) -> None:
                if event.type == RESYNC:
                    return  # level-triggered resyncs are the reconcile queue's (app._resync_forever)
                for listener in self.listeners:
                    listener(kind, event.key, event.old, event.new)
            return changed

        self.tenants: Informer[dict[str, Any]] = Informer(
            client, "Tenant", label_selector=tenant_selector or None,
            transform=custom_object_projector("Tenant", "voxfleet.dev/v1alpha1"),
            indexers={"namespace": lambda body: [tenant_namespace(body)]})
        self.agents: Informer[dict[str, Any]] = Informer(
            client, "VoiceAgent", transform=custom_object_projector("VoiceAgent", "voxfleet.dev/v1alpha1"),
            indexers={"namespace": by_namespace})
        self.pods: Informer[PodView] = Informer(client, "Pod", label_selector=labels.WORKER_SELECTOR,
                                                transform=project_pod,
                                                indexers={"pool": lambda pod: [pool_index(pod.pool)]})
        self.deployments: Informer[DeploymentView] = Informer(
            client, "Deployment", label_selector=f"{MANAGED_SELECTOR},{labels.AGENT}", transform=project_deployment,
            indexers={"agent": lambda dep: [agent_index(dep.namespace, dep.agent)]})
        self.nodes: Informer[NodeView] = Informer(client, "Node", transform=project_node)
        self.managed: dict[str, Informer[ManagedView]] = {
            kind: Informer(client, kind, label_selector=f"{MANAGED_SELECTOR},{labels.TENANT}",
                           transform=managed_projector(kind), name=f"managed {kind}")
            for kind in MANAGED_KINDS}
        # The root worker token: only this one Secret of the platform namespace (a Role there, by name).
        self.token: Informer[bytes | None] = Informer(
            client, "Secret", namespace=platform.platform_namespace, transform=project_token,
            field_selector=f"metadata.name={platform.worker_token_secret}", name="worker token")
        for kind, watched in (("Tenant", self.tenants), ("VoiceAgent", self.agents), ("Pod", self.pods),
                              ("Deployment", self.deployments), ("Node", self.nodes), ("WorkerToken", self.token),
                              *((f"Managed{kind}", watched) for kind, watched in self.managed.items())):
            watched.add_handler(relay(kind))
        managed_secret = relay("ManagedSecret")
        tenant_secret = relay("TenantSecret")

        def secret_changed(event: InformerEvent[SecretView]) -> None:
            old, new = event.old, event.new
            if (old and old.managed) or (new and new.managed):
                managed_secret(InformerEvent(event.type, event.key, new.managed if new else None,
                                             old.managed if old else None))
            tenant_secret(event)

        self.secrets = SecretWatches(client, secret_changed)

    def informers(self) -> list[Informer[Any]]:
        """Every informer that must have listed before anything reconciles (tenant Secrets come later)."""
        return [self.tenants, self.agents, self.pods, self.deployments, self.nodes, self.token,
                *self.managed.values()]

    # --- lookups --------------------------------------------------------------------------------------------

    def tenant(self, name: str) -> dict[str, Any] | None:
        return self.tenants.get(None, name)

    def tenant_names(self) -> list[str]:
        return [name for _, name in self.tenants.keys()]

    def agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.agents.get(namespace, name)

    def agent_keys(self) -> list[AgentKey]:
        return self.agents.keys()

    def tenant_for_namespace(self, namespace: str) -> dict[str, Any] | None:
        tenants = self.tenants.by_index("namespace", namespace)
        return tenants[0] if tenants else None

    def agents_in(self, namespace: str) -> list[dict[str, Any]]:
        return self.agents.by_index("namespace", namespace)

    def pool_pods(self, pool: PoolKey) -> list[PodView]:
        # Sorted: the scaler's choices among equal pods must not depend on set order.
        return sorted(self.pods.by_index("pool", pool_index(pool)), key=lambda pod: pod.name)

    def agent_deployments(self, namespace: str, agent: str) -> list[DeploymentView]:
        return sorted(self.deployments.by_index("agent", agent_index(namespace, agent)), key=lambda dep: dep.name)

    def worker_token(self) -> bytes | None:
        return self.token.get(self.platform.platform_namespace, self.platform.worker_token_secret)

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
        informer = self.managed.get(kind)
        item = informer.get(namespace, name) if informer is not None else None
        return item.version if item is not None else None


def tenant_namespace(body: dict[str, Any]) -> str:
    spec = body.get("spec") or {}
    return spec.get("namespace") or f"tenant-{body['metadata']['name']}"
