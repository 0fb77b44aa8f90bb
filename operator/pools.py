"""The warm pools the operator runs: one per VoiceAgent region, with the spec figures the scaler needs and the
demand it last measured. The agent reconciler registers and updates them; the scaler reads and scales them."""

from __future__ import annotations

from dataclasses import dataclass

from voxfleet.operator.cluster_view import PoolKey
from voxfleet.operator.scaling import PoolScaler


@dataclass
class Pool:
    tenant: str
    namespace: str
    agent: str
    region: str
    min_workers: int
    max_workers: int
    sessions_per_worker: int
    buffer_sessions: int
    scale_down_delay: float
    config_hash: str
    scaler: PoolScaler
    spare_capacity: str = "WorkerLoss"  # spec.scaling.spareCapacity: keep room for one lost worker's calls
    spare_note: str = ""  # what the worker-loss spare last added or lacked (scaling.Recommendation.note)
    draining: bool = False  # the region left the spec (or the tenant's allowed regions)
    active: int = 0  # calls in progress, draining workers included
    free: int = 0  # free slots on ready, non-draining workers
    reported: bool = False  # figures come from at least one poll round

    @property
    def key(self) -> PoolKey:
        return self.namespace, self.agent, self.region


class PoolRegistry:
    """Pools by key, by agent (reconciles look an agent's pools up on every run) and by namespace (the worker-loss
    spare counts what the tenant's other pools use of its pod quota)."""

    def __init__(self) -> None:
        self.pools: dict[PoolKey, Pool] = {}
        self._by_agent: dict[tuple[str, str], dict[str, Pool]] = {}
        self._by_namespace: dict[str, dict[PoolKey, Pool]] = {}

    def get(self, key: PoolKey) -> Pool | None:
        return self.pools.get(key)

    def of_agent(self, namespace: str, agent: str) -> list[Pool]:
        return list(self._by_agent.get((namespace, agent), {}).values())

    def of_namespace(self, namespace: str) -> list[Pool]:
        return list(self._by_namespace.get(namespace, {}).values())

    def put(self, pool: Pool) -> None:
        self.pools[pool.key] = pool
        self._by_agent.setdefault((pool.namespace, pool.agent), {})[pool.region] = pool
        self._by_namespace.setdefault(pool.namespace, {})[pool.key] = pool

    def drop(self, key: PoolKey) -> Pool | None:
        pool = self.pools.pop(key, None)
        if pool is not None:
            regions = self._by_agent.get((pool.namespace, pool.agent), {})
            regions.pop(pool.region, None)
            if not regions:
                self._by_agent.pop((pool.namespace, pool.agent), None)
            in_namespace = self._by_namespace.get(pool.namespace, {})
            in_namespace.pop(key, None)
            if not in_namespace:
                self._by_namespace.pop(pool.namespace, None)
        return pool

    def __len__(self) -> int:
        return len(self.pools)
