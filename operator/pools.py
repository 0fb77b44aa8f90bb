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
    draining: bool = False  # the region left the spec (or the tenant's allowed regions)
    active: int = 0  # calls in progress, draining workers included
    free: int = 0  # free slots on ready, non-draining workers
    reported: bool = False  # figures come from at least one poll round

    @property
    def key(self) -> PoolKey:
        return self.namespace, self.agent, self.region


class PoolRegistry:
    """Pools by key, and by agent (reconciles look an agent's pools up on every run)."""

    def __init__(self) -> None:
        self.pools: dict[PoolKey, Pool] = {}
        self._by_agent: dict[tuple[str, str], dict[str, Pool]] = {}

    def get(self, key: PoolKey) -> Pool | None:
        return self.pools.get(key)

    def of_agent(self, namespace: str, agent: str) -> list[Pool]:
        return list(self._by_agent.get((namespace, agent), {}).values())

    def put(self, pool: Pool) -> None:
        self.pools[pool.key] = pool
        self._by_agent.setdefault((pool.namespace, pool.agent), {})[pool.region] = pool

    def drop(self, key: PoolKey) -> Pool | None:
        pool = self.pools.pop(key, None)
        if pool is not None:
            regions = self._by_agent.get((pool.namespace, pool.agent), {})
            regions.pop(pool.region, None)
            if not regions:
                self._by_agent.pop((pool.namespace, pool.agent), None)
        return pool

    def __len__(self) -> int:
        return len(self.pools)
