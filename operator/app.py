"""A running operator: wait for the leader Lease, fill the caches, then reconcile (kopf feeds Tenants and
VoiceAgents, our own watches feed pods, Deployments and nodes), scale, and serve health and metrics.

Start order matters for restart safety: nothing is reconciled before every cache has been listed, so a fresh
replica never mistakes "not seen yet" for "doesn't exist" (and never shrinks a busy pool it hasn't seen).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Hashable
from typing import Any

import kopf
import structlog

from voxfleet.api.settings import PlatformSettings
from voxfleet.operator import tenant_handlers, voiceagent_handlers
from voxfleet.operator.agent_reconciler import AgentReconciler
from voxfleet.operator.health_server import HealthServer
from voxfleet.operator.kube_client import KubeApiError, KubeClient, KubeCredentials
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
    def __init__(self, platform: PlatformSettings, settings: OperatorSettings, credentials: KubeCredentials):
        self.platform, self.settings, self.credentials = platform, settings, credentials
        self.client = KubeClient(credentials, max_connections=2 * settings.reconcile_workers + 16)
        if settings.crash_after_writes:
            self.client.on_write = _crash_after(settings.crash_after_writes, settings.crash_write_pattern)
        self.rt = Runtime.build(platform, settings, self.client)
        self.queue = ReconcileQueue(self._reconcile, workers=settings.reconcile_workers,
                                    retry_min=settings.retry_min_seconds, retry_max=settings.retry_max_seconds)
        self.agents = AgentReconciler(
            self.rt, lambda ns, name, delay: self.queue.add((AGENT, ns, name), full=False, delay=delay),
            backlog=lambda: min(10.0, max(1.0, len(self.queue) / settings.reconcile_workers)))
        self.tenants = TenantReconciler(self.rt)
        self.rt.view.listeners.append(Triggers(self.rt, self.queue))
        self.scaler = Scaler(self.rt, lambda ns, name: self.queue.add((AGENT, ns, name), full=False))
        self.lease = LeaderLease(self.client, namespace=platform.platform_namespace, name=settings.lease_name,
                                 identity=settings.identity, duration=settings.lease_duration_seconds,
                                 renew_every=settings.lease_renew_seconds)
        self.health = HealthServer(self.rt.metrics, live=self._live, ready=self._ready, host=settings.http_host,
                                   port=settings.http_port)
        self.started = False  # caches listed, reconciling
        self.kopf_stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []  # ours, ended before kopf waits for "hung" tasks on shutdown

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
            return await self._lead(stop, stopped)
        finally:
            self.rt.metrics.leader.set(0)
            await self.health.stop()
            await self.rt.poller.close()
            await self.client.close()

    async def _lead(self, stop: asyncio.Event, stopped: asyncio.Task) -> int:
        tasks = self.tasks
        tasks += [asyncio.create_task(cache.run(), name=f"watch {cache.kind}") for cache in self.rt.view.caches()]
        try:
            await self._install_admission_policy()
            for cache in self.rt.view.caches():
                await cache.synced.wait()
            while True:
                try:
                    await self._seed()
                    break
                except (KubeApiError, OSError, asyncio.TimeoutError) as error:
                    log.warning("cannot list Tenants and VoiceAgents yet", error=str(error)[:300])
                    await asyncio.sleep(1)
            tasks += [asyncio.create_task(self.queue.run(), name="reconcile queue"),
                      asyncio.create_task(self.scaler.run(), name="scaler"),
                      asyncio.create_task(self._resync_forever(), name="resync"),
                      asyncio.create_task(self._relist_forever(), name="relist")]
            self.started = True
            log.info("operator leading", tenants=len(self.rt.view.tenants), agents=len(self.rt.view.agents))
            kopf_task = asyncio.create_task(self._kopf(), name="kopf")
            holder = asyncio.create_task(self.lease.hold(), name="lease")
            done, _ = await asyncio.wait({stopped, holder, kopf_task}, return_when=asyncio.FIRST_COMPLETED)
            self.kopf_stop.set()
            if kopf_task not in done:
                await asyncio.wait({kopf_task}, timeout=10)
            if holder in done:
                log.error("lost the leader lease: exiting so that only one replica acts")
                return 1
            holder.cancel()
            # kopf ends on SIGTERM/SIGINT itself (it installs handlers); anything else ending it is a crash.
            crashed = kopf_task.done() and not kopf_task.cancelled() and kopf_task.exception() is not None
            if crashed and not stop.is_set():
                log.error("kopf stopped unexpectedly", error=str(kopf_task.exception()))
                return 1
            await self.lease.release()
            return 0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.rt.view.secrets.stop()

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

    async def _seed(self) -> None:
        """Tenants and VoiceAgents listed once before anything reconciles; kopf keeps them current after."""
        params = {"labelSelector": self.settings.tenant_selector} if self.settings.tenant_selector else {}
        for tenant in await self._list_all("Tenant", params):
            self.rt.view.tenants[tenant["metadata"]["name"]] = tenant
            self.queue.add((TENANT, tenant["metadata"]["name"]))
        for agent in await self._list_all("VoiceAgent", {}):
            meta = agent["metadata"]
            self.rt.view.agents[(meta["namespace"], meta["name"])] = agent
            self.queue.add((AGENT, meta["namespace"], meta["name"]))

    async def _list_all(self, kind: str, params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        query = dict(params, limit="500")
        while True:
            page = await self.client.list(kind, **query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", page.get("apiVersion", "voxfleet.dev/v1alpha1"))
                item.setdefault("kind", kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def _relist_forever(self) -> None:
        """kopf's watches begin with lists of their own, some time after our seed: an object deleted in between
        never produces an event, and our copy would keep it (a Tenant forever counting a deleted agent). So the
        copy is checked against fresh lists soon after leading (when kopf is surely watching), then with every
        resync."""
        for delay in (5.0, 15.0, 45.0):
            await asyncio.sleep(delay)
            await self._drop_vanished()
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            await self._drop_vanished()

    async def _drop_vanished(self) -> None:
        try:
            params = {"labelSelector": self.settings.tenant_selector} if self.settings.tenant_selector else {}
            listed_tenants = {t["metadata"]["name"] for t in await self._list_all("Tenant", params)}
            listed_agents = {(a["metadata"]["namespace"], a["metadata"]["name"])
                             for a in await self._list_all("VoiceAgent", {})}
        except (KubeApiError, OSError, asyncio.TimeoutError) as error:
            log.warning("cannot list Tenants and VoiceAgents to check the operator's copy", error=str(error)[:300])
            return
        view = self.rt.view
        for name in [n for n in view.tenants if n not in listed_tenants]:
            if await self._vanished(view.tenants, name, "Tenant", name, None):
                self.queue.add((TENANT, name), full=True)
        for key in [k for k in view.agents if k not in listed_agents]:
            if await self._vanished(view.agents, key, "VoiceAgent", key[1], key[0]):
                self.queue.add((AGENT, *key), full=True)
                tenant = view.tenant_for_namespace(key[0])
                if tenant is not None:  # its agent count changed
                    self.queue.add((TENANT, tenant["metadata"]["name"]), full=False)

    async def _vanished(self, copies: dict, key: Hashable, kind: str, name: str, namespace: str | None) -> bool:
        """Drop our copy of an object the apiserver no longer has (asked directly: the list may predate a
        creation kopf has delivered since). True when dropped."""
        uid = (copies.get(key) or {}).get("metadata", {}).get("uid")
        if await self.client.get_or_none(kind, name, namespace) is not None:
            return False
        if (copies.get(key) or {}).get("metadata", {}).get("uid") != uid:
            return False  # re-created (and delivered by kopf) while we asked
        copies.pop(key, None)
        log.info("dropped an object deleted while no watch saw it", kind=kind, name=name, namespace=namespace)
        return True

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_seconds)
            self.rt.applier.forget_all()  # re-send everything once: repairs drift no watch could see
            for name in list(self.rt.view.tenants):
                self.queue.add((TENANT, name), background=True)
            for namespace, name in list(self.rt.view.agents):
                self.queue.add((AGENT, namespace, name), background=True)

    async def _kopf(self) -> None:
        registry = kopf.OperatorRegistry()
        credentials = self.credentials

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            token = credentials.current_token()
            return kopf.ConnectionInfo(server=credentials.server, ca_path=credentials.ca_path,
                                       certificate_path=credentials.cert_path, private_key_path=credentials.key_path,
                                       scheme="Bearer" if token else None, token=token,
                                       insecure=credentials.insecure or None)

        @kopf.on.cleanup(registry=registry)
        async def stop_our_tasks(**_: Any) -> None:
            # kopf stops on SIGTERM itself, then waits for every task it didn't start (its own stop-flag waiter
            # included): end ours and raise the flag, or it waits 5 s for nothing.
            self.kopf_stop.set()
            for task in self.tasks:
                task.cancel()

        tenant_handlers.register(registry, self.rt, self.queue)
        voiceagent_handlers.register(registry, self.rt, self.queue)
        settings = kopf.OperatorSettings()
        settings.posting.enabled = False  # our own Events say what matters, once
        settings.scanning.disabled = True
        settings.queueing.idle_timeout = 0.5  # per-object workers end soon: a SIGTERM waits for them
        settings.networking.request_timeout = 60
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        if self.settings.tenant_selector:
            settings.watching.label_selectors["voxfleet.dev", "tenants"] = self.settings.tenant_selector
        await kopf.operator(registry=registry, settings=settings, clusterwide=True, standalone=True,
                            stop_flag=self.kopf_stop)


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
