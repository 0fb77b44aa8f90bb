"""The scaling loop: every poll interval, read every worker's load, let each pool's PoolScaler decide, and act.

Writes happen only when a pool's size changes (the Deployment's replicas, and at scale-down the deletion-cost
annotation on the chosen idle pods) and, rate-limited, when a status figure moved: never per session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from voxfleet.api import labels
from voxfleet.api.tenant import Quotas as TenantQuotas
from voxfleet.operator.cluster_view import PodView
from voxfleet.kube.errors import KubeApiError, NotFound
from voxfleet.operator.pool_builder import deployment_name
from voxfleet.operator.pools import Pool
from voxfleet.operator.runtime import Runtime
from voxfleet.operator.scaling import DELETION_COST_VICTIM, Recommendation, WorkerView, recommend_with_spare

log = structlog.get_logger("voxfleet.operator.scaler")


class Scaler:
    def __init__(self, runtime: Runtime, refresh_status: Callable[[str, str], None]):
        self.rt = runtime
        self.refresh_status = refresh_status  # (namespace, agent): queue a status-only reconcile
        self.rounds = 0
        self.last_round_seconds = 0.0
        self.last_round_at = time.monotonic()

    async def run(self) -> None:
        interval = self.rt.settings.poll_interval_seconds
        while True:
            started = time.monotonic()
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("scaling round failed")
            await asyncio.sleep(max(0.05, interval - (time.monotonic() - started)))

    async def round(self) -> None:
        started = time.monotonic()
        pods = [pod for key in list(self.rt.pools.pools) for pod in self.rt.view.pool_pods(key) if pod.ip]
        failed = await self.rt.poller.poll(pods)
        self.rt.metrics.poll_last_sweep.set(time.monotonic() - started)
        for pod in failed:
            pool = self.rt.pools.get(pod.pool)
            if pool is not None:
                self.rt.metrics.poll_failures.labels(pool.tenant, pool.agent, pool.region).inc()
        now = time.monotonic()
        # Deciding is synchronous and cheap; only a pool whose size changes gets a task for its writes. (One task
        # per pool per round was 15,000 tasks every 2 s at 5,000 agents x 3 regions: the operator's biggest
        # CPU cost while nothing scaled.)
        resizes = [resize for pool in list(self.rt.pools.pools.values())
                   if (resize := self._decide(pool, now)) is not None]
        if resizes:
            await asyncio.gather(*resizes)
        self.last_round_seconds = time.monotonic() - started
        self.rt.metrics.poll_round_seconds.observe(self.last_round_seconds)
        self.rt.metrics.poll_last_round.set(self.last_round_seconds)
        self.rt.metrics.polled_workers.set(len(pods))
        self.rounds += 1
        self.last_round_at = time.monotonic()

    def _workers(self, pool: Pool, now: float) -> tuple[list[WorkerView], int, int, int, bool, int]:
        """(live workers, active on live workers, active everywhere, free, rollout underway, most calls on one
        draining or terminating worker)"""
        workers: list[WorkerView] = []
        live_active = total_active = free = busiest_draining = 0
        rolling = False
        for pod in self.rt.view.pool_pods(pool.key):
            report = self.rt.poller.fresh(pod.uid, now)
            if report is not None:
                total_active += report.active
                if pod.terminating or report.draining:
                    busiest_draining = max(busiest_draining, report.active)
            if pod.terminating:
                continue
            rolling = rolling or pod.config_hash != pool.config_hash
            if report is not None and not report.draining:
                live_active += report.active
                if pod.ready and report.ready:
                    free += report.free
            workers.append(WorkerView(
                pod=pod.name, ready=pod.ready, active=report.active if report is not None else None,
                free=report.free if report is not None else 0, draining=bool(report and report.draining),
                idle_seconds=report.idle_seconds if report is not None else 0.0,
                ever_ready=pod.uid in self.rt.poller.ever_reported))
        return workers, live_active, total_active, free, rolling, busiest_draining

    def _decide(self, pool: Pool, now: float) -> Coroutine[Any, Any, None] | None:
        """Refresh the pool's figures and step its scaler; the writes of a size change, if there is one."""
        workers, live_active, total_active, free, rolling, busiest_draining = self._workers(pool, now)
        if (total_active, free) != (pool.active, pool.free) or not pool.reported:
            pool.active, pool.free, pool.reported = total_active, free, True
            self.refresh_status(pool.namespace, pool.agent)
        if pool.draining:
            return None
        decision = self._recommend(pool, live_active, busiest_draining)
        wanted = decision.workers
        if rolling:
            wanted = max(wanted, pool.scaler.desired)  # no scale-down while a rollout replaces pods
        before = pool.scaler.desired
        victims = pool.scaler.step(wanted, now, pool.scale_down_delay, workers)
        if pool.scaler.desired == before:
            return None
        return self._resize(pool, before, victims, decision, live_active)

    async def _resize(self, pool: Pool, before: int, victims: list[str], decision: Recommendation,
                      live_active: int) -> None:
        direction = "up" if pool.scaler.desired > before else "down"
        log.info("scaling pool", namespace=pool.namespace, agent=pool.agent, region=pool.region,
                 workers_from=before, workers_to=pool.scaler.desired, active_sessions=live_active,
                 spare_workers=decision.spare, victims=victims)
        try:
            if victims:
                await self._mark_victims(pool, victims)
            await self.rt.client.merge_patch("Deployment", deployment_name(pool.agent, pool.region),
                                             {"spec": {"replicas": pool.scaler.desired}}, pool.namespace)
        except NotFound:
            return  # the reconciler recreates the Deployment (with the new size)
        except KubeApiError as error:
            log.warning("could not scale pool", namespace=pool.namespace, agent=pool.agent, region=pool.region,
                        error=str(error)[:300])
            pool.scaler.desired = before
            return
        self.rt.metrics.scale_events.labels(direction=direction).inc()
        self.rt.recorder.normal(self.rt.view.agent(pool.namespace, pool.agent),
                                "ScaledUp" if direction == "up" else "ScaledDown",
                                f"{pool.region}: {before} -> {pool.scaler.desired} worker(s) for"
                                f" {decision.why(live_active, pool.buffer_sessions)}")
        self.refresh_status(pool.namespace, pool.agent)

    def _recommend(self, pool: Pool, live_active: int, busiest_draining: int) -> Recommendation:
        decision = recommend_with_spare(live_active, pool.buffer_sessions, pool.sessions_per_worker,
                                        pool.min_workers, pool.max_workers, pool.spare_capacity, busiest_draining)
        if decision.spare:  # only then is the quota worth counting: the spare must fit in what the tenant may use
            decision = recommend_with_spare(live_active, pool.buffer_sessions, pool.sessions_per_worker,
                                            pool.min_workers, pool.max_workers, pool.spare_capacity,
                                            busiest_draining, self._quota_room(pool))
        if decision.note != pool.spare_note:
            pool.spare_note = decision.note
            self.refresh_status(pool.namespace, pool.agent)
        return decision

    def _quota_room(self, pool: Pool) -> int | None:
        """The most workers this pool may have before the tenant's pod quota (quotas.maxWorkers, over all its
        agents and regions) refuses one: the quota less what the namespace's other pools have or want."""
        tenant = self.rt.view.tenant_for_namespace(pool.namespace)
        if tenant is None:
            return None
        quota = ((tenant.get("spec") or {}).get("quotas") or {}).get("maxWorkers", TenantQuotas().max_workers)
        others = sum(max(len(self.rt.view.pool_pods(other.key)), other.scaler.desired)
                     for other in self.rt.pools.of_namespace(pool.namespace) if other.key != pool.key)
        return max(0, int(quota) - others)

    async def _mark_victims(self, pool: Pool, victims: list[str]) -> None:
        """Idle pods first: the ReplicaSet removes the pods with the lowest deletion cost. Marks from an earlier
        scale-down on pods that are not victims now are cleared, so a busy pod is never picked by an old mark."""
        chosen = set(victims)
        pods: list[PodView] = self.rt.view.pool_pods(pool.key)
        for pod in pods:
            if pod.terminating:
                continue
            if pod.name in chosen and pod.deletion_cost != DELETION_COST_VICTIM:
                cost: str | None = DELETION_COST_VICTIM
            elif pod.name not in chosen and pod.deletion_cost is not None:
                cost = None
            else:
                continue
            await self.rt.client.merge_patch("Pod", pod.name,
                                             {"metadata": {"annotations": {labels.POD_DELETION_COST: cost}}},
                                             pod.namespace)
        # The ReplicaSet controller must see the marks before it picks: wait (briefly) until our own watch does.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            marked = {p.name for p in self.rt.view.pool_pods(pool.key) if p.deletion_cost == DELETION_COST_VICTIM}
            if chosen <= marked:
                return
            await asyncio.sleep(0.05)
