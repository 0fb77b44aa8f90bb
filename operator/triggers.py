"""Which change of a watched built-in object makes which Tenant or VoiceAgent reconcile (level-triggered: the
reconcile then looks at everything as it is).

- a managed object deleted, or changed by someone else (its version is not the one our apply produced): the
  owner reconciles fully and puts it back (a deletion also drops it from the applier's memory, so the apply is
  really sent);
- a pool Deployment's status moved: the agent's status is refreshed;
- a pod of a draining pool went away: the agent reconciles (the pool may be empty now and can be removed);
- the set of regions with voice nodes changed: every agent reconciles (NoNodesInRegion may have cleared);
- the worker token changed: every Tenant reconciles (its namespace's derived token is rewritten);
- a Secret in a tenant namespace changed: the agents there that wait on a Secret problem reconcile.
"""

from __future__ import annotations

from typing import Any

from voxfleet.operator.cluster_view import DeploymentView, Key, ManagedView, PodView
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime


class Triggers:
    def __init__(self, runtime: Runtime, queue: ReconcileQueue):
        self.rt = runtime
        self.queue = queue
        self.regions: set[str] | None = None

    def __call__(self, kind: str, key: Key, old: Any, new: Any) -> None:
        if kind == "Deployment":
            self._deployment(key, old, new)
        elif kind == "Pod":
            self._pod(old, new)
        elif kind == "Node":
            self._nodes()
        elif kind == "WorkerToken":
            for name in self.rt.view.tenant_names():
                self.queue.add((TENANT, name), full=True)
        elif kind == "TenantSecret":
            self._tenant_secret(key[0])
        elif kind.startswith("Managed"):
            self._managed(old, new)

    def _tenant_secret(self, namespace: str) -> None:
        for (agent_namespace, name), memory in list(self.rt.agents.items()):
            if agent_namespace == namespace and any(p.reason.startswith("Secret") for p in memory.problems):
                self.queue.add((AGENT, namespace, name), full=True)

    def _agent_exists(self, namespace: str, agent: str) -> bool:
        return (namespace, agent) in self.rt.view.agents

    def _deployment(self, key: Key, old: DeploymentView | None, new: DeploymentView | None) -> None:
        current = new or old
        if current is None or not self._agent_exists(current.namespace, current.agent):
            return
        agent_key = (AGENT, current.namespace, current.agent)
        ours = self.rt.applier.our_version(("Deployment", *key))
        if new is None:
            self.rt.applier.forget_one(("Deployment", *key))  # gone: the next apply must really be sent
        if new is None or (ours is not None and str(new.generation) != ours and new.generation > int(ours or 0)):
            self.queue.add(agent_key, full=True)
        else:
            self.queue.add(agent_key, full=False)

    def _pod(self, old: PodView | None, new: PodView | None) -> None:
        if new is None and old is not None:
            pool = self.rt.pools.get(old.pool)
            if pool is not None and pool.draining:
                self.queue.add((AGENT, old.namespace, old.agent), full=True)

    def _nodes(self) -> None:
        regions = self.rt.view.regions_with_nodes()
        if self.regions is not None and regions != self.regions:
            for namespace, name in self.rt.view.agent_keys():
                self.queue.add((AGENT, namespace, name), full=True)
        self.regions = regions

    def _managed(self, old: ManagedView | None, new: ManagedView | None) -> None:
        current = new or old
        if current is None:
            return
        key = (current.kind, current.namespace, current.name)
        ours = self.rt.applier.our_version(key)
        if new is not None and (ours is None or new.version == ours):
            return  # our own write, or something we have not applied in this process
        if new is None:
            self.rt.applier.forget_one(key)  # gone: the next apply must really be sent
        if current.agent:
            if self._agent_exists(current.namespace, current.agent):
                self.queue.add((AGENT, current.namespace, current.agent), full=True)
        elif current.tenant and self.rt.view.tenant(current.tenant) is not None:
            self.queue.add((TENANT, current.tenant), full=True)

