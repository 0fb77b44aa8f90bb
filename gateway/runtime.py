"""Everything one gateway process holds while it runs: its clients, its watched copies and its counters.

Nothing here is shared state between replicas: each replica rebuilds all of it from the apiserver at start.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request

from voxfleet.gateway.agent_directory import AgentDirectory
from voxfleet.gateway.key_store import KeyStore
from voxfleet.gateway.kube_client import KubeClient
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.rate_limits import TenantRateLimiter
from voxfleet.gateway.settings import GatewaySettings
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.watch_cache import WatchCache


@dataclass
class GatewayRuntime:
    settings: GatewaySettings
    kube: KubeClient
    keys: KeyStore
    tenants: TenantDirectory
    agents: AgentDirectory
    metrics: GatewayMetrics
    rate_limiter: TenantRateLimiter
    background: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def build(cls, settings: GatewaySettings, kube: KubeClient | None = None) -> "GatewayRuntime":
        kube = kube or KubeClient.from_kubeconfig(settings.kubeconfig)
        return cls(settings=settings, kube=kube, keys=KeyStore(kube, settings.platform_namespace),
                   tenants=TenantDirectory(kube), agents=AgentDirectory(kube), metrics=GatewayMetrics(),
                   rate_limiter=TenantRateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst))

    @property
    def watches(self) -> list[WatchCache]:
        return [self.keys.cache, self.tenants.cache, self.agents.cache]

    async def start(self, sync_timeout: float = 30.0) -> None:
        for watch in self.watches:
            watch.start()
        await asyncio.gather(*(watch.wait_synced(sync_timeout) for watch in self.watches))

    def ready(self) -> bool:
        return all(watch.synced.is_set() for watch in self.watches)

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
        for watch in self.watches:
            await watch.stop()
        await self.kube.aclose()


def runtime_of(request: Request) -> GatewayRuntime:
    return request.app.state.runtime
