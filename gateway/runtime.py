"""Everything one gateway process holds while it runs: its clients, its watched copies and its counters.

Nothing here is shared state between replicas: each replica rebuilds all of it from the apiserver at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request

from voxfleet.gateway.agent_directory import AgentDirectory
from voxfleet.gateway.allocation import Allocator
from voxfleet.gateway.database_health import DatabaseHealth
from voxfleet.gateway.key_store import KeyStore
from voxfleet.gateway.livekit_health import LiveKitHealth
from voxfleet.gateway.livekit_rooms import LiveKitRooms
from voxfleet.gateway.livekit_tokens import LiveKitTokens
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.rate_limits import TenantRateLimiter
from voxfleet.gateway.recovery import SessionRecovery
from voxfleet.gateway.room_events import RoomEvents
from voxfleet.gateway.session_locator import SessionLocator
from voxfleet.gateway.session_quota import SessionQuota
from voxfleet.gateway.settings import GatewaySettings
from voxfleet.gateway.spec_checker import SpecChecker
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.gateway.webhook_replays import ReplayGuard
from voxfleet.gateway.worker_call_shares import TenantCallShares
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.gateway.worker_registry import WorkerRegistry
from voxfleet.kube.backoff import Backoff
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import Informer
from voxfleet.store.database import Database
from voxfleet.telemetry.resource_attributes import SERVICE_GATEWAY
from voxfleet.telemetry.tracing import Tracing, set_up_tracing

log = structlog.get_logger(__name__)

REQUEST_BACKOFF = Backoff(retries=3, base=0.1, cap=1.0, max_retry_after=2.0)


def gateway_tracing() -> Tracing:
    """Spans are always made (trace context reaches the workers and every log line); exported when the OTEL_*
    env names a collector. The gateway's spans never carry call content, whatever an agent records: it serves
    every tenant. Its own provider, not the global one, so tests can run several gateways in one process."""
    tracing = set_up_tracing(SERVICE_GATEWAY, record_content=False)
    if tracing.problem:
        log.warning("spans are not exported", problem=tracing.problem)
    else:
        log.info("tracing", export=tracing.target)
    return tracing


@dataclass
class GatewayRuntime:
    settings: GatewaySettings
    kube: KubeClient
    keys: KeyStore
    tenants: TenantDirectory
    agents: AgentDirectory
    workers: WorkerRegistry
    worker_client: WorkerClient
    tokens: LiveKitTokens
    rooms: LiveKitRooms
    allocator: Allocator
    locator: SessionLocator
    metrics: GatewayMetrics
    rate_limiter: TenantRateLimiter
    session_keys: list[bytes]
    tracing: Tracing
    recovery: SessionRecovery
    room_events: RoomEvents
    webhook_replays: ReplayGuard
    spec_checker: SpecChecker
    livekit_health: LiveKitHealth
    database_health: DatabaseHealth
    database: Database | None = None  # the store; None when no VOXFLEET_DATABASE_URL is set
    background: list[asyncio.Task] = field(default_factory=list)

    @classmethod
    def build(cls, settings: GatewaySettings, kube: KubeClient | None = None) -> "GatewayRuntime":
        # 32 connections: four watches hold one each; the rest serve agent and secret writes (sessions never
        # reach the apiserver). A tenant's request waits out a short apiserver blip or a 429 (under a second,
        # Retry-After up to 2 s), then gets its 502/503 and retries itself, rather than hanging on for the
        # layer's default of six retries; the watches retry on their own anyway.
        kube = kube or KubeClient.from_kubeconfig(settings.kubeconfig, max_connections=32,
                                                  backoff=REQUEST_BACKOFF, user_agent="voxfleet-gateway")
        metrics = GatewayMetrics()
        agents = AgentDirectory(kube)
        tenants = TenantDirectory(kube, platform_namespace=settings.platform_namespace)
        workers = WorkerRegistry(kube, metrics, tenants)  # trusts only pods in their Tenant's namespace
        client = WorkerClient(settings.load_worker_token(), settings.worker_port,
                              timeout=settings.dispatch_timeout_seconds,
                              namespace_at=lambda ip: worker.namespace if (worker := workers.at_ip(ip)) else None,
                              max_connections=settings.worker_max_connections,
                              shares=TenantCallShares(settings.worker_calls_per_tenant))
        tokens = LiveKitTokens(settings.regions)
        rooms = LiveKitRooms(settings.regions)
        livekit_health = LiveKitHealth(settings.regions, metrics.registry, period=settings.livekit_probe_seconds,
                                       timeout=settings.livekit_probe_timeout_seconds,
                                       down_after=settings.livekit_down_after_failures)
        session_keys = settings.load_session_keys()
        database_url = settings.load_database_url()
        # The pool only: nothing connects until the first probe or query, so a database outage delays no start.
        database = Database.from_url(
            database_url, pool_size=settings.database_pool_size, max_overflow=settings.database_max_overflow,
            pool_timeout=settings.database_pool_timeout_seconds,
            statement_timeout_ms=settings.database_statement_timeout_ms,
            application_name="voxfleet-gateway") if database_url else None
        tracing = gateway_tracing()
        allocator = Allocator(settings, workers, client, tokens, SessionQuota(workers, agents, client), metrics,
                              session_keys, tracing.tracer("voxfleet.gateway"))
        locator = SessionLocator(workers, client, rooms)
        recovery = SessionRecovery(workers, agents, tenants, allocator, client, rooms, locator, metrics, session_keys)
        workers.on_lost(recovery.worker_lost)
        return cls(settings=settings, kube=kube, keys=KeyStore(kube, settings.platform_namespace),
                   tenants=tenants, agents=agents, workers=workers, worker_client=client,
                   tokens=tokens, rooms=rooms, allocator=allocator, locator=locator, metrics=metrics,
                   rate_limiter=TenantRateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
                   session_keys=session_keys, tracing=tracing, recovery=recovery,
                   room_events=RoomEvents(workers, agents, tenants, allocator, client, rooms, recovery),
                   webhook_replays=ReplayGuard(settings.webhook_max_age_seconds + 60), spec_checker=SpecChecker(),
                   livekit_health=livekit_health, database=database,
                   database_health=DatabaseHealth(database, metrics.registry, period=settings.database_probe_seconds))

    @property
    def watches(self) -> list[Informer]:
        return [self.keys.cache, self.tenants.cache, self.agents.cache, self.workers.cache]

    async def start(self, sync_timeout: float = 30.0) -> None:
        for watch in self.watches:
            watch.start()
        # The spec-checking process loads its models meanwhile, so the first agent write does not wait for it.
        await asyncio.gather(*(watch.wait_synced(sync_timeout) for watch in self.watches), self.spec_checker.start(),
                             self.livekit_health.start(), self.database_health.start())
        self.background.append(asyncio.create_task(
            self.workers.poll_loads(self.worker_client, self.settings.load_poll_seconds), name="load hints"))

    def ready(self) -> bool:
        return self.readiness()[0]

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what /readyz shows). Ready once every watch has listed, while no watch has been broken for
        longer than stale_watch_ready_seconds (through a shorter apiserver outage sessions are placed from the
        cached copies: every replica leaving the rotation at once would cut the API instead), and while at least
        one region's LiveKit answers (down regions are skipped; none left means no call can be placed). A database
        that does not answer makes it "degraded", never unready: calls need no database (database_health.py)."""
        now = time.monotonic()
        watches: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for watch in self.watches:
            broken_for = None if watch.broken_since is None or watch.healthy else now - watch.broken_since
            watches[watch.name] = {"synced": watch.has_synced, "healthy": watch.healthy,
                                   "brokenForSeconds": None if broken_for is None else round(broken_for, 1)}
            if not watch.has_synced:
                problems.append("loading")
            elif broken_for is not None and broken_for > self.settings.stale_watch_ready_seconds:
                problems.append("stale")
        regions = self.livekit_health.detail()
        if not self.livekit_health.any_up():
            problems.append("no_livekit")
        database = self.database_health.status()
        if problems:
            return False, {"status": sorted(set(problems))[0], "regions": regions, "database": database,
                           "watches": watches}
        # Still taking requests, from cached copies or in the regions whose LiveKit works: "degraded" says so.
        degraded = any(not w["healthy"] for w in watches.values()) or any(
            region["livekit"] == "down" for region in regions.values()) or database == "down"
        return True, {"status": "degraded" if degraded else "ready", "regions": regions, "database": database,
                      "watches": watches}

    async def close_room(self, region: str, room: str) -> None:
        """Best effort: the caller is dropped from a session that was ended (the worker already left)."""
        if not self.livekit_health.is_up(region):
            return  # its LiveKit does not answer: the DELETE must not wait out the Twirp timeout for nothing
        try:
            await self.rooms.delete_room(region, room)
        except Exception as error:  # noqa: BLE001 - LiveKit may have closed it already
            log.debug("room not deleted", region=region, error=type(error).__name__)

    async def stop(self) -> None:
        for task in self.background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for watch in self.watches:
            await watch.stop()
        await self.livekit_health.stop()
        await self.database_health.stop()
        if self.database is not None:
            await self.database.close()
        self.spec_checker.stop()
        await self.worker_client.aclose()
        await self.rooms.aclose()
        await self.kube.aclose()
        self.tracing.shutdown()


def runtime_of(request: Request) -> GatewayRuntime:
    return request.app.state.runtime
