"""The scaling loop: every poll interval, read every worker's load, let each pool's PoolScaler decide, and act.

Writes happen only when a pool's size changes (the Deployment's replicas, and at scale-down the deletion-cost
annotation on the chosen idle pods) and, rate-limited, when a status figure moved: never per session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from voxfleet.api import labels
from voxfleet.operator.cluster_view import PodView
from voxfleet.kube.errors import KubeApiError, NotFound
from voxfleet.operator.pool_builder import deployment_name
from voxfleet.operator.pools import Pool
from voxfleet.operator.runtime import Runtime
from voxfleet.operator.scaling import DELETION_COST_VICTIM, WorkerView, recommend

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
        await asyncio.gather(*(self._scale(pool, now) for pool in list(self.rt.pools.pools.values())))
        self.last_round_seconds = time.monotonic() - started
        self.rt.metrics.poll_round_seconds.observe(self.last_round_seconds)
        self.rt.metrics.poll_last_round.set(self.last_round_seconds)
        self.rt.metrics.polled_workers.set(len(pods))
        self.rounds += 1
        self.last_round_at = time.monotonic()

    def _workers(self, pool: Pool, now: float) -> tuple[list[WorkerView], int, int, int, bool]:
        """(live workers, active on live workers, active everywhere, free, rollout underway)"""
        workers: list[WorkerView] = []
        live_active = total_active = free = 0
        rolling = False
        for pod in self.rt.view.pool_pods(pool.key):
            report = self.rt.poller.fresh(pod.uid, now)
            if report is not None:
                total_active += report.active
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
        return workers, live_active, total_active, free, rolling

    async def _scale(self, pool: Pool, now: float) -> None:
        workers, live_active, total_active, free, rolling = self._workers(pool, now)
        if (total_active, free) != (pool.active, pool.free) or not pool.reported:
            pool.active, pool.free, pool.reported = total_active, free, True
            self.refresh_status(pool.namespace, pool.agent)
        if pool.draining:
            return
        wanted = recommend(live_active, pool.buffer_sessions, pool.sessions_per_worker, pool.min_workers,
                           pool.max_workers)
        if rolling:
            wanted = max(wanted, pool.scaler.desired)  # no scale-down while a rollout replaces pods
        before = pool.scaler.desired
        victims = pool.scaler.step(wanted, now, pool.scale_down_delay, workers)
        if pool.scaler.desired == before:
            return
        direction = "up" if pool.scaler.desired > before else "down"
        log.info("scaling pool", namespace=pool.namespace, agent=pool.agent, region=pool.region,
                 workers_from=before, workers_to=pool.scaler.desired, active_sessions=live_active,
                 victims=victims)
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
                                f"{pool.region}: {before} -> {pool.scaler.desired} worker(s) for {live_active}"
                                f" active call(s) and {pool.buffer_sessions} free slot(s) wanted")
        self.refresh_status(pool.namespace, pool.agent)

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
