"""Which workers exist, where, and how busy: a watch on worker Pods plus load hints.

A worker takes sessions when its Pod has an IP, is Ready and is not terminating; tenant, agent and region come
from the Pod's labels. Labels alone prove nothing (anyone who may create a Pod anywhere can copy them), so a Pod
is a worker only when it runs in a Tenant's namespace (as the tenant directory knows it, owner and all) and its
tenant label names that Tenant: only the platform creates Pods there (the operator's pools; tenants' groups get
VoiceAgent rights only). Any other labelled Pod never enters the registry: no dispatch, no load poll, no token.

Load hints (free slots) come from every dispatch answer and from a slow poll of `GET /v1/load`; they only order
the candidates, the worker itself decides (409 when full).

A worker is *lost* when its Pod disappears or its container stops or restarts (a new process has none of the
old one's calls): listeners get the last known Worker, to recover its calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from voxfleet.api import labels
from voxfleet.api.wire import LoadReport
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import ADDED, MODIFIED, Informer, InformerEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Worker:
    uid: str
    namespace: str
    name: str
    ip: str | None
    tenant: str
    agent: str
    region: str
    ready: bool
    terminating: bool
    incarnation: tuple[Any, ...]  # changes when the container process is replaced
    served: bool = False  # was Ready at some point of this incarnation: only then can it hold sessions

    @property
    def takes_sessions(self) -> bool:
        return self.ready and not self.terminating and bool(self.ip)

    @property
    def alive(self) -> bool:
        """Its process runs (it may hold calls even while draining or not ready)."""
        return bool(self.ip) and self.incarnation[-1] == "running"


@dataclass
class LoadHint:
    free: int
    active: int
    capacity: int
    at: float


def worker_from_pod(pod: dict[str, Any]) -> Worker | None:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    pod_labels = meta.get("labels") or {}
    tenant, agent, region = (pod_labels.get(k) for k in (labels.TENANT, labels.AGENT, labels.REGION))
    if not (tenant and agent and region):
        return None
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    containers = status.get("containerStatuses") or []
    running = bool(containers) and all("running" in (c.get("state") or {}) for c in containers)
    incarnation = (meta.get("uid"), tuple(int(c.get("restartCount") or 0) for c in containers),
                   "running" if running else "stopped")
    return Worker(uid=meta.get("uid", ""), namespace=meta.get("namespace", ""), name=meta.get("name", ""),
                  ip=status.get("podIP") or None, tenant=tenant, agent=agent, region=region,
                  ready=conditions.get("Ready") == "True" and status.get("phase") == "Running",
                  terminating=bool(meta.get("deletionTimestamp")), incarnation=incarnation)


LostListener = Callable[[Worker], None]


class WorkerRegistry:
    def __init__(self, kube: KubeClient, metrics: GatewayMetrics, tenants: TenantDirectory):
        self.cache: Informer[dict[str, Any]] = Informer(kube, "Pod", label_selector=labels.WORKER_SELECTOR,
                                                        name="worker pods")
        self.metrics = metrics
        self.tenants = tenants
        self.by_uid: dict[str, Worker] = {}
        self._pools: dict[tuple[str, str, str], dict[str, Worker]] = {}  # (tenant, agent, region) -> uid -> W
        self._by_ip: dict[str, Worker] = {}
        self.hints: dict[str, LoadHint] = {}  # by pod uid
        self._lost_listeners: list[LostListener] = []
        self.cache.add_handler(self._on_informer_event)
        tenants.on_owners_changed(self._owners_changed)

    def on_lost(self, listener: LostListener) -> None:
        self._lost_listeners.append(listener)

    # --- the watch ------------------------------------------------------------------------------------------

    def _on_informer_event(self, event: InformerEvent[dict[str, Any]]) -> None:
        self._on_change(event.type, event.new, event.old)

    def _on_change(self, event_type: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        uid = ((new or old or {}).get("metadata") or {}).get("uid", "")
        previous = self.by_uid.get(uid)
        current = worker_from_pod(new) if new is not None else None
        if current is not None and not self._trusted(current):
            if event_type == ADDED and self.tenants.cache.has_synced:  # before: owners still unknown
                log.warning("a pod labelled as a worker is not in its tenant's namespace; it is no worker",
                            pod=current.name, namespace=current.namespace, tenant_label=current.tenant,
                            namespace_owner=self.tenants.owner_of(current.namespace))
            current = None
        if current is not None:
            carried = previous is not None and previous.incarnation[:2] == current.incarnation[:2] and previous.served
            current = dataclasses.replace(current, served=current.ready or carried)
        if previous is not None:
            self._forget(previous)
        if current is not None:
            self._remember(current)
        else:
            self.hints.pop(uid, None)
        if previous is not None and previous.alive and (current is None or current.incarnation != previous.incarnation):
            log.info("worker lost", pod=previous.name, namespace=previous.namespace, tenant=previous.tenant,
                     agent=previous.agent, region=previous.region, deleted=current is None)
            self.hints.pop(uid, None)
            for listener in self._lost_listeners:
                try:
                    listener(previous)
                except Exception:  # noqa: BLE001 - recovery of other workers must go on
                    log.exception("worker-lost listener failed")
        self._update_gauge(previous, current)

    def _trusted(self, worker: Worker) -> bool:
        return self.tenants.owner_of(worker.namespace) == worker.tenant

    def _owners_changed(self, namespaces: set[str]) -> None:
        """A Tenant appeared, went or lost its namespace: judge that namespace's pods again."""
        for namespace in namespaces:
            for pod in self.cache.in_namespace(namespace):
                self._on_change(MODIFIED, pod, pod)

    def _remember(self, worker: Worker) -> None:
        self.by_uid[worker.uid] = worker
        self._pools.setdefault((worker.tenant, worker.agent, worker.region), {})[worker.uid] = worker
        if worker.ip:
            self._by_ip[worker.ip] = worker

    def _forget(self, worker: Worker) -> None:
        self.by_uid.pop(worker.uid, None)
        pool = self._pools.get((worker.tenant, worker.agent, worker.region))
        if pool is not None:
            pool.pop(worker.uid, None)
            if not pool:
                del self._pools[(worker.tenant, worker.agent, worker.region)]
        if worker.ip and self._by_ip.get(worker.ip) is worker:
            del self._by_ip[worker.ip]

    def _update_gauge(self, previous: Worker | None, current: Worker | None) -> None:
        for worker in {w for w in (previous, current) if w is not None}:
            pool = self._pools.get((worker.tenant, worker.agent, worker.region), {})
            ready = sum(1 for w in pool.values() if w.takes_sessions)
            self.metrics.workers.labels(worker.tenant, worker.agent, worker.region, "true").set(ready)
            self.metrics.workers.labels(worker.tenant, worker.agent, worker.region, "false").set(len(pool) - ready)

    # --- queries --------------------------------------------------------------------------------------------

    def pool(self, tenant: str, agent: str, region: str) -> list[Worker]:
        return list(self._pools.get((tenant, agent, region), {}).values())

    def ready_workers(self, tenant: str, agent: str, region: str) -> list[Worker]:
        return [w for w in self.pool(tenant, agent, region) if w.takes_sessions]

    def tenant_workers(self, tenant: str) -> list[Worker]:
        return [w for (t, _, _), pool in self._pools.items() if t == tenant for w in pool.values()]

    def at_ip(self, ip: str) -> Worker | None:
        return self._by_ip.get(ip)

    def by_name(self, namespace: str, name: str) -> Worker | None:
        return next((w for w in self.by_uid.values() if w.namespace == namespace and w.name == name), None)

    # --- load hints -----------------------------------------------------------------------------------------

    def note_load(self, worker: Worker, report: LoadReport) -> None:
        self.hints[worker.uid] = LoadHint(free=report.free, active=report.active, capacity=report.capacity,
                                          at=time.monotonic())

    def note_full(self, worker: Worker) -> None:
        hint = self.hints.get(worker.uid)
        capacity = hint.capacity if hint else 0
        self.hints[worker.uid] = LoadHint(free=0, active=capacity, capacity=capacity, at=time.monotonic())

    def free_hint(self, worker: Worker) -> int | None:
        hint = self.hints.get(worker.uid)
        return None if hint is None else hint.free

    async def poll_loads(self, client: WorkerClient, period: float, *, concurrency: int = 32) -> None:
        """Refresh stale hints, forever (a hint older than a period is stale)."""
        limit = asyncio.Semaphore(concurrency)

        async def refresh(worker: Worker) -> None:
            async with limit:
                report = await client.load(worker.ip, timeout=min(1.0, period))
            if self.by_uid.get(worker.uid) is not worker:
                return
            if report is not None:
                self.note_load(worker, report)
            else:
                # Unanswered: ordered last until it answers again. While the Pod watch is down (an apiserver
                # outage) this is how a worker that died stops being every new session's first try.
                self.note_full(worker)

        while True:
            await asyncio.sleep(period)
            cutoff = time.monotonic() - period
            stale = [w for w in list(self.by_uid.values()) if w.takes_sessions
                     and (self.hints.get(w.uid) is None or self.hints[w.uid].at < cutoff)]
            await asyncio.gather(*(refresh(w) for w in stale), return_exceptions=True)
