"""A running operator: wait for the leader Lease, list every informer, then reconcile, scale, and serve health
and metrics.

Everything the operator reads comes from voxfleet.kube informers (ClusterView): Tenants and VoiceAgents as well
as Pods, Deployments, Nodes and the objects it manages. Their handlers queue reconciles (tenant_handlers,
voiceagent_handlers, triggers); the keyed ReconcileQueue runs them; the scaler polls worker load. No kopf: what
the operator used it for (two watches) is what the shared informer does, and one cache for every kind means no
second view to reconcile against the first (see docs/architecture.md, "the operator on voxfleet.kube").

Start order matters for restart safety: nothing is reconciled before every informer has listed, so a fresh
replica never mistakes "not seen yet" for "doesn't exist" (and never shrinks a busy pool it hasn't seen).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Hashable

import structlog

from voxfleet.api.settings import PlatformSettings
from voxfleet.kube.client import KubeClient
from voxfleet.kube.credentials import Credentials
from voxfleet.kube.errors import KubeApiError
from voxfleet.operator import tenant_handlers, voiceagent_handlers
from voxfleet.operator.agent_reconciler import AgentReconciler
from voxfleet.operator.eviction_guard import EvictionGuard
from voxfleet.operator.health_server import HealthServer
from voxfleet.operator.leader_lease import LeaderLease
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime
from voxfleet.operator.scaler import Scaler
from voxfleet.operator.settings import OperatorSettings
from voxfleet.operator.tenant_deletion_policy import build_tenant_deletion_policy
from voxfleet.operator.tenant_reconciler import TenantReconciler
from voxfleet.operator.triggers import Triggers

log = structlog.get_logger("voxfleet.operator")


class OperatorApp:
    def __init__(self, platform: PlatformSettings, settings: OperatorSettings, credentials: Credentials):
        self.platform, self.settings = platform, settings
        self.client = KubeClient(credentials, max_connections=2 * settings.reconcile_workers + 16,
                                 user_agent="voxfleet-operator")
        # Watches on a pool of their own, without a cap: each holds a connection for minutes, and there is one
        # Secret watch per tenant namespace (no cluster-wide Secret right), so 500 Tenants are 500+ watches. In
        # the reconcilers' pool they would take every connection and leave the reconciles waiting forever.
        self.watch_client = KubeClient(credentials, max_connections=0, user_agent="voxfleet-operator")
        if settings.crash_after_writes:
            self.client.on_write = _crash_after(settings.crash_after_writes, settings.crash_write_pattern)
        self.rt = Runtime.build(platform, settings, self.client, self.watch_client)
        self.queue = ReconcileQueue(self._reconcile, workers=settings.reconcile_workers,
                                    retry_min=settings.retry_min_seconds, retry_max=settings.retry_max_seconds)

        def backlog() -> float:  # 1 while the queue keeps up, up to 10 when it is far behind: writes coalesce more
            return min(10.0, max(1.0, len(self.queue) / settings.reconcile_workers))
        self.agents = AgentReconciler(
            self.rt, lambda ns, name, delay: self.queue.add((AGENT, ns, name), full=False, delay=delay),
            backlog=backlog)
        self.tenants = TenantReconciler(
            self.rt, lambda name, delay: self.queue.add((TENANT, name), full=False, delay=delay), backlog=backlog)
        tenant_handlers.register(self.rt, self.queue)
        voiceagent_handlers.register(self.rt, self.queue)
        self.rt.view.listeners.append(Triggers(self.rt, self.queue))
        self.scaler = Scaler(self.rt, lambda ns, name: self.queue.add((AGENT, ns, name), full=False))
        self.eviction_guard = EvictionGuard(self.rt)  # marks busy workers after each of the scaler's load sweeps
        self.lease = LeaderLease(self.client, namespace=platform.platform_namespace, name=settings.lease_name,
                                 identity=settings.identity, duration=settings.lease_duration_seconds,
                                 renew_every=settings.lease_renew_seconds)
        self.health = HealthServer(self.rt.metrics, live=self._live, ready=self._ready, host=settings.http_host,
                                   port=settings.http_port)
        self.started = False  # informers listed, reconciling

    # --- probes ---------------------------------------------------------------------------------------------

    def _live(self) -> str | None:
        stalled = time.monotonic() - self.scaler.last_round_at > 30 * self.settings.poll_interval_seconds + 30
        if self.started and stalled:
            return "the scaling loop has stalled"
        return None

    def _ready(self) -> str | None:
        return None  # a standby is ready too: it is healthy and waiting for the Lease

    # --- reconcile dispatch -----------------------------------------------------------------------------------

    async def _reconcile(self, key: Hashable, full: bool) -> float | None:
        kind = key[0]  # type: ignore[index]
        started = time.perf_counter()
        try:
            if kind == AGENT:
                again = await self.agents.reconcile(key[1], key[2], full)  # type: ignore[index]
            else:
                again = await self.tenants.reconcile(key[1], full)  # type: ignore[index]
        except Exception:
            self.rt.metrics.reconciles.labels(kind=kind, result="error").inc()
            raise
        finally:
            self.rt.metrics.reconcile_seconds.labels(kind=kind).observe(time.perf_counter() - started)
            self.rt.metrics.queue_depth.set(len(self.queue))
        self.rt.metrics.reconciles.labels(kind=kind, result="ok").inc()
        return again

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        """Until `stop` is set (0) or the Lease is lost (1)."""
        port = await self.health.start()
        log.info("operator starting", identity=self.settings.identity, health_port=port,
                 tenant_selector=self.settings.tenant_selector or "(all)")
        try:
            acquired = asyncio.create_task(self.lease.acquire())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({acquired, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquired.cancel()
                return 0
            self.rt.metrics.leader.set(1)
            return await self._lead(stopped)
        finally:
            self.rt.metrics.leader.set(0)
            await self.rt.recorder.close()  # Normal events still on their way get two seconds
            await self.health.stop()
            await self.eviction_guard.close()
            await self.rt.poller.close()
            await self.client.aclose()
            await self.watch_client.aclose()

    async def _lead(self, stopped: asyncio.Task) -> int:
        informers = self.rt.view.informers()
        tasks: list[asyncio.Task] = []
        try:
            for informer in informers:
                informer.start()
            await self._install_admission_policy()
            # Handlers queue every listed object as it arrives; the queue only starts once all are in.
            for informer in informers:
                await informer.wait_synced()
            tasks += [asyncio.create_task(self.queue.run(), name="reconcile queue"),
                      asyncio.create_task(self.scaler.run(), name="scaler"),
                      asyncio.create_task(self._resync_forever(), name="resync")]
            self.started = True
            log.info("operator leading", tenants=len(self.rt.view.tenants), agents=len(self.rt.view.agents))
            holder = asyncio.create_task(self.lease.hold(), name="lease")
            await asyncio.wait({stopped, holder}, return_when=asyncio.FIRST_COMPLETED)
            if holder.done():
                log.error("lost the leader lease: exiting so that only one replica acts")
                return 1
            holder.cancel()
            await self.lease.release()
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(informer.stop() for informer in informers), self.rt.view.secrets.stop())

    async def _install_admission_policy(self) -> None:
        if not self.settings.install_admission_policy:
            return
        for manifest in build_tenant_deletion_policy():
            try:
                await self.rt.applier.apply(manifest)
            except KubeApiError as error:
                log.warning("could not install the Tenant deletion policy (the finalizer still protects"
                            " Tenants)", kind=manifest["kind"], error=str(error)[:300])
                return

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            self.rt.applier.forget_all()  # re-send everything once: repairs drift no watch could see
            for name in self.rt.view.tenant_names():
                self.queue.add((TENANT, name), background=True)
            for namespace, name in self.rt.view.agent_keys():
                self.queue.add((AGENT, namespace, name), background=True)


def _crash_after(writes: int, pattern: str):
    """Crash tests: a real SIGKILL (no cleanup, no finally) right after the Nth (matching) apiserver write."""
    count = 0
    matches = re.compile(pattern).search if pattern else (lambda _: True)

    def on_write(method: str, path: str) -> None:
        nonlocal count
        if not matches(f"{method} {path}"):
            return
        count += 1
        log.debug("crash test: write", writes=count, write=f"{method} {path}")
        if count >= writes:
            log.warning("crash test: SIGKILL now", writes=count, last_write=f"{method} {path}")
            os.kill(os.getpid(), signal.SIGKILL)
    return on_write
