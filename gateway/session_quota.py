"""maxConcurrentSessions, held exactly with any number of gateway replicas and no shared database.

The rule is *claim, then count*. A replica first claims the slot at a worker (the worker is the single
authority on its slots), then counts the tenant's sessions by asking every live worker of the tenant for its
load, and releases its own claim (429) when the count is over the quota.

Why this never over-admits: take any moment when n sessions are admitted and order them by when their claims
completed. The last one, S, counted only after its own claim completed, so after every other claim had
completed too, and its count saw all of them: if n exceeded the quota, S would have released itself. Sessions
racing at the limit may all release (never the reverse); so a released claim backs off at random and tries
again a few times (allocation.QUOTA_ROUNDS) before answering 429, which lets some of the racers through.
Workers that do not answer the count are counted as full (their last reported capacity, else the agent's
sessionsPerWorker, else 100), unless they have not been Ready since their process started: no replica
dispatches to a worker before it is Ready, so such a worker holds nothing.

Counting costs one `GET /v1/load` per live worker of the tenant, so it is skipped when it cannot matter: when
the tenant's workers can never hold more sessions than the quota (sum over its agents' regions of
maxWorkers x sessionsPerWorker, and over the live worker pods), the slots themselves enforce it.
"""

from __future__ import annotations

import asyncio

from voxfleet.gateway.agent_directory import AgentDirectory
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import Worker, WorkerRegistry

_UNKNOWN_CAPACITY = 100  # sessionsPerWorker's upper bound: a pod we know nothing about may hold this many


class SessionQuota:
    def __init__(self, registry: WorkerRegistry, agents: AgentDirectory, client: WorkerClient,
                 count_timeout: float = 1.0):
        self.registry = registry
        self.agents = agents
        self.client = client
        self.count_timeout = count_timeout

    def potential_sessions(self, tenant: str, namespace: str) -> int:
        """The most sessions the tenant's workers could ever hold at once, as far as this replica knows."""
        total = 0
        counted_pools: set[tuple[str, str]] = set()
        for obj in self.agents.in_namespace(namespace):
            info = self.agents.get(namespace, obj["metadata"]["name"])
            if info is None:
                continue
            per_worker = info.spec.scaling.sessions_per_worker
            for region in info.spec.regions:
                pool = self.registry.pool(tenant, info.name, region.name)
                largest = max([per_worker] + [self._capacity(w) for w in pool])
                total += max(region.max_workers, len(pool)) * largest
                counted_pools.add((info.name, region.name))
        for worker in self.registry.tenant_workers(tenant):
            if (worker.agent, worker.region) not in counted_pools:
                total += self._capacity(worker)
        return total

    def _capacity(self, worker: Worker) -> int:
        hint = self.registry.hints.get(worker.uid)
        if hint and hint.capacity:
            return hint.capacity
        info = self.agents.get(worker.namespace, worker.agent)
        return info.spec.scaling.sessions_per_worker if info else _UNKNOWN_CAPACITY

    def needs_count(self, tenant: str, namespace: str, limit: int) -> bool:
        return self.potential_sessions(tenant, namespace) > limit

    async def count(self, tenant: str, *, claimed: Worker, claimed_active: int) -> int:
        """Sessions of the tenant now, counted after our own claim (claimed_active: that worker's answer)."""
        # A worker never Ready since its process started has had no dispatch from anyone: it holds nothing.
        others = [w for w in self.registry.tenant_workers(tenant) if w.alive and w.served and w.uid != claimed.uid]
        reports = await asyncio.gather(*(self.client.load(w.ip, timeout=self.count_timeout) for w in others))
        total = claimed_active
        for worker, report in zip(others, reports):
            if report is not None:
                self.registry.note_load(worker, report)
                total += report.active
            else:  # it may be holding sessions other replicas gave it: count it full
                total += self._capacity(worker)
        return total
