"""One VoiceAgent into its warm pools: check what the schema can't, apply the ConfigMap, Service and one
Deployment + PodDisruptionBudget per region, drain regions that left the spec, and write status when a figure
changed. Level-triggered: it looks only at the agent as it is now and at what exists, never at what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api import labels
from voxfleet.api.field_problem import field_problem_of
from voxfleet.api.tenant import TenantSpec
from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.operator import agent_status, spec_checks
from voxfleet.operator.agent_builder import build_config_map, build_service, worker_config
from voxfleet.operator.cluster_view import AgentKey, tenant_namespace
from voxfleet.kube.errors import NotFound
from voxfleet.operator.ownership import Owner
from voxfleet.operator.pool_builder import build_deployment, build_pod_disruption_budget, deployment_name
from voxfleet.operator.pools import Pool
from voxfleet.operator.runtime import Runtime
from voxfleet.operator.scaling import PoolScaler, recommend
from voxfleet.operator.spec_checks import Problem
from voxfleet.operator.written_status import WrittenStatus

log = structlog.get_logger("voxfleet.operator.agent")
# Rechecked on a timer: nothing tells us when these are fixed (the Secret ones also reconcile on a change of a
# Secret in the namespace, once its watch runs; the timer covers the time before).
_UNWATCHABLE = {"SecretMissing", "SecretKeyMissing", "SecretNotAllowed", "NoTenant"}


class AgentReconciler:
    def __init__(self, runtime: Runtime, refresh_status_later: Callable[[str, str, float], None],
                 backlog: Callable[[], float] = lambda: 1.0):
        self.rt = runtime
        self.refresh_status_later = refresh_status_later  # (namespace, name, delay): a status-only run later
        self.backlog = backlog  # 1 when the queue keeps up, up to 10 when it is far behind
        # The spec checked once per (uid, generation): its costly part (RE2 budget, tool schemas) runs in a
        # thread, so one agent's check never holds the event loop that reconciles the others.
        self._checked: dict[AgentKey, tuple[tuple[str, int], VoiceAgentSpec | Problem]] = {}
        self.written = WrittenStatus()

    async def reconcile(self, namespace: str, name: str, full: bool) -> float | None:
        key = (namespace, name)
        body = self.rt.view.agent(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(key)  # owner references let the garbage collector remove what it owned
            return None
        if self.rt.settings.tenant_selector and self.rt.view.tenant_for_namespace(namespace) is None:
            self.forget(key)  # not one of our Tenants': another operator instance serves it
            return None
        memory = self.rt.memory(key)
        again = None
        if full or memory.observed_generation is None:
            memory.problems = await self._apply(body)
            memory.observed_generation = int(body["metadata"].get("generation") or 0)
            if any(p.reason in _UNWATCHABLE for p in memory.problems):
                again = self.rt.settings.recheck_seconds
        await self._status(key, body)
        return again

    def forget(self, key: AgentKey) -> None:
        namespace, name = key
        self._checked.pop(key, None)
        self.written.forget(key)
        self.rt.agents.pop(key, None)
        self.rt.recorder.forget(f"VoiceAgent/{namespace}/{name}")
        for pool in self.rt.pools.of_agent(namespace, name):
            self.rt.pools.drop(pool.key)
            self.rt.metrics.forget_pool(pool.tenant, pool.agent, pool.region)
        # Forgetting what was applied is always safe: at worst the next apply is sent instead of skipped.
        self.rt.applier.forget(lambda k: k[1] == namespace and (k[2] == name or k[2].startswith(f"{name}-")))
        self.rt.metrics.pools.set(len(self.rt.pools))

    # --- apply ----------------------------------------------------------------------------------------------

    async def _tenant(self, namespace: str) -> dict[str, Any] | None:
        tenant = self.rt.view.tenant_for_namespace(namespace)
        if tenant is not None:
            return tenant
        # Not (yet) in the cache: ask the apiserver, the namespace's label names its tenant.
        ns = await self.rt.client.get_or_none("Namespace", namespace)
        tenant_name = ((ns or {}).get("metadata", {}).get("labels") or {}).get(labels.TENANT)
        if not tenant_name:
            return None
        tenant = await self.rt.client.get_or_none("Tenant", tenant_name)
        return tenant if tenant is not None and tenant_namespace(tenant) == namespace else None

    async def _checked_spec(self, body: dict[str, Any]) -> VoiceAgentSpec | Problem:
        meta = body["metadata"]
        key, stamp = (meta["namespace"], meta["name"]), (meta.get("uid", ""), int(meta.get("generation") or 0))
        cached = self._checked.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        # A thread, not a process: with the spec's RE2 budget the whole check is ~0.1 s at worst and the loop
        # waits at most one pattern's compile (~16 ms, google-re2 holds the GIL) at a time; the operator has no
        # request latency to keep, and once per generation is what matters.
        checked = await asyncio.to_thread(_validated_spec, body.get("spec") or {})
        self._checked[key] = (stamp, checked)
        return checked

    async def _apply(self, body: dict[str, Any]) -> list[Problem]:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        spec = await self._checked_spec(body)
        if isinstance(spec, Problem):
            return [spec]
        tenant = await self._tenant(namespace)
        if tenant is None:
            return [Problem("NoTenant", f"namespace {namespace} belongs to no Tenant: VoiceAgents run only in a"
                                        " Tenant's namespace", blocking=True)]
        tenant_name = tenant["metadata"]["name"]
        try:
            allowed = TenantSpec.model_validate(tenant.get("spec") or {}).allowed_regions
        except ValidationError:
            allowed = []
        problems = spec_checks.check_name(name) + spec_checks.check_image(spec, self.rt.platform)
        problems += spec_checks.check_urls(spec, self.rt.platform)
        referenced = {ref.name for _, ref in spec_checks.spec_references(spec)}
        secrets = await self.rt.view.secrets.views(namespace, referenced)  # keys and labels, never values
        problems += spec_checks.check_secrets(spec, namespace, secrets, self.rt.platform)
        problems += spec_checks.check_regions(spec, allowed, self.rt.view.regions_with_nodes(), tenant_name)
        if any(p.blocking for p in problems):
            return problems  # the pools keep running the last spec that was fine

        config = worker_config(tenant_name, body, spec)
        owner = Owner.of(body)
        applier = self.rt.applier
        # The ConfigMap first: a pod of the new template must never start on the old config. Everything else is
        # independent and goes out at once (one round trip per step, not one per object).
        await _apply_all(applier, [build_config_map(owner, config), build_service(owner, config, self.rt.platform)])
        manifests: list[dict[str, Any]] = []

        skipped = {p.region for p in problems if p.region_skipped}
        accepted: set[str] = set()
        rolling: list[str] = []  # regions whose existing pool gets a new worker config
        config_hash = config.config_hash()
        now = time.monotonic()
        for region in spec.regions:
            if region.name in skipped:
                continue
            existing = self.rt.view.deployments.get(namespace, deployment_name(name, region.name))
            if existing is not None and existing.agent != name:
                problems.append(Problem("NameConflict", f"Deployment {deployment_name(name, region.name)} already"
                                                        f" belongs to VoiceAgent {existing.agent}; rename one of"
                                                        " them", region=region.name, region_skipped=True))
                continue
            accepted.add(region.name)
            if existing is not None and existing.config_hash and existing.config_hash != config_hash:
                rolling.append(region.name)
            pool = self._pool(tenant_name, namespace, name, spec, region, config_hash, existing, now)
            manifests.append(build_deployment(owner, config, region.name, pool.scaler.desired, self.rt.platform,
                                              self.rt.settings.grace_margin_seconds))
            manifests.append(build_pod_disruption_budget(owner, config, region.name))
        await _apply_all(applier, manifests)
        self._rolling_out(body, rolling, config_hash)

        await self._drain_removed(body, config, accepted)
        self.rt.metrics.pools.set(len(self.rt.pools))
        return problems

    def _pool(self, tenant: str, namespace: str, name: str, spec: VoiceAgentSpec, region: Any, config_hash: str,
              existing: Any, now: float) -> Pool:
        key = (namespace, name, region.name)
        pool = self.rt.pools.get(key)
        scaling = spec.scaling
        if pool is None:
            # After a restart the Deployment's size is the best knowledge of demand: keep it.
            initial = existing.replicas if existing is not None else recommend(
                0, scaling.buffer_sessions, scaling.sessions_per_worker, region.min_workers, region.max_workers)
            pool = Pool(tenant=tenant, namespace=namespace, agent=name, region=region.name, min_workers=0,
                        max_workers=0, sessions_per_worker=1, buffer_sessions=0, scale_down_delay=0,
                        config_hash=config_hash, scaler=PoolScaler(desired=initial))
            self.rt.pools.put(pool)
        pool.tenant, pool.config_hash, pool.draining = tenant, config_hash, False
        pool.min_workers, pool.max_workers = region.min_workers, region.max_workers
        pool.sessions_per_worker, pool.buffer_sessions = scaling.sessions_per_worker, scaling.buffer_sessions
        pool.scale_down_delay = scaling.scale_down_delay_seconds
        pool.spare_capacity = scaling.spare_capacity
        pool.scaler.clamp(region.min_workers, region.max_workers, now)
        return pool

    def _rolling_out(self, body: dict[str, Any], regions: list[str], config_hash: str) -> None:
        """Say (a Normal event) that pools now roll a new worker config out, and remember which Deployment
        generation carries it, so that RolledOut is said when that generation is done."""
        if not regions:
            return
        meta = body["metadata"]
        memory = self.rt.memory((meta["namespace"], meta["name"]))
        for region in regions:
            applied = self.rt.applier.our_version(("Deployment", meta["namespace"],
                                                   deployment_name(meta["name"], region)))
            memory.rolling_out[region] = int(applied) if applied and applied.isdigit() else 0
        self.rt.recorder.normal(body, "RollingOut", f"generation {meta.get('generation')}: worker config"
                                                    f" {config_hash} rolling out in {', '.join(regions)}")

    def _rolled_out(self, body: dict[str, Any], figures: list[agent_status.RegionFigures]) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        memory = self.rt.memory((namespace, name))
        for figure in figures:
            generation = memory.rolling_out.get(figure.name)
            if generation is None:
                continue
            deployment = self.rt.view.deployments.get(namespace, deployment_name(name, figure.name))
            if figure.draining or deployment is None:
                memory.rolling_out.pop(figure.name)  # left the spec (or was deleted) mid-rollout: nothing to say
            elif deployment.generation >= generation and deployment.rolled_out and figure.settled:
                memory.rolling_out.pop(figure.name)
                self.rt.recorder.normal(body, "RolledOut", f"{figure.name}: all {figure.ready} worker(s) run worker"
                                                           f" config {deployment.config_hash}")

    async def _drain_removed(self, body: dict[str, Any], config: Any, accepted: set[str]) -> None:
        """A region that left the spec: scale to 0 (each worker drains its calls on SIGTERM), delete when empty."""
        namespace, name = config.namespace, config.agent
        for deployment in self.rt.view.agent_deployments(namespace, name):
            if deployment.region in accepted:
                continue
            key = (namespace, name, deployment.region)
            pool = self.rt.pools.get(key)
            if pool is not None:
                pool.draining = True
                pool.scaler.desired = 0
            if deployment.replicas != 0:
                log.info("draining region", namespace=namespace, agent=name, region=deployment.region)
                await self.rt.client.merge_patch("Deployment", deployment.name, {"spec": {"replicas": 0}},
                                                 namespace)
                self.rt.recorder.normal(body, "DrainingRegion",
                                        f"{deployment.region} left the spec: its {deployment.replicas} worker(s)"
                                        " stop taking calls and exit when their calls end")
            elif not self.rt.view.pool_pods(key):
                log.info("region drained, removing its pool", namespace=namespace, agent=name,
                         region=deployment.region)
                removed = await self.rt.applier.delete("Deployment", namespace, deployment.name)
                await self.rt.applier.delete("PodDisruptionBudget", namespace, deployment.name)
                self.rt.pools.drop(key)
                if removed:  # not when an earlier reconcile removed it and the informer has not seen that yet
                    self.rt.recorder.normal(body, "RegionDrained", f"{deployment.region}: every call ended, its"
                                                                   " pool is removed")
                self.rt.metrics.forget_pool(config.tenant, name, deployment.region)
        for pool in self.rt.pools.of_agent(namespace, name):
            if pool.region not in accepted and self.rt.view.deployments.get(
                    namespace, deployment_name(name, pool.region)) is None:
                self.rt.pools.drop(pool.key)

    # --- status ---------------------------------------------------------------------------------------------

    def _figures(self, namespace: str, name: str, spec_regions: list[str],
                 problems: list[Problem]) -> list[agent_status.RegionFigures]:
        skipped = {p.region for p in problems if p.region_skipped}
        figures: dict[str, agent_status.RegionFigures] = {}
        for region in spec_regions:
            pool = self.rt.pools.get((namespace, name, region))
            deployment = self.rt.view.deployments.get(namespace, deployment_name(name, region))
            if region in skipped or pool is None or pool.draining:
                figures[region] = agent_status.RegionFigures(region, 0, has_pool=False)
                continue
            figures[region] = agent_status.RegionFigures(
                region, pool.scaler.desired, ready=deployment.ready if deployment else 0,
                updated=deployment.updated_current if deployment else 0, active=pool.active, free=pool.free,
                rolled_out=deployment.rolled_out if deployment else False, spare=pool.spare_note)
        for deployment in self.rt.view.agent_deployments(namespace, name):
            pool = self.rt.pools.get((namespace, name, deployment.region))
            if deployment.region not in spec_regions or deployment.region in skipped or (pool and pool.draining):
                figures[deployment.region] = agent_status.RegionFigures(
                    deployment.region, 0, ready=deployment.ready, updated=deployment.updated_current,
                    active=pool.active if pool else 0, draining=True)
        return list(figures.values())

    async def _status(self, key: AgentKey, body: dict[str, Any]) -> None:
        namespace, name = key
        memory = self.rt.memory(key)
        problems = list(memory.problems)
        for deployment in self.rt.view.agent_deployments(namespace, name):
            problems += spec_checks.replica_failure(deployment.region, deployment.failure)
        spec_regions = [r.get("name", "") for r in (body.get("spec") or {}).get("regions") or []]
        figures = self._figures(namespace, name, spec_regions, problems)
        self._export(namespace, name, figures)
        self._rolled_out(body, figures)
        await self.rt.recorder.problems(f"VoiceAgent/{namespace}/{name}", body,
                                        [(p.reason, p.message) for p in problems])

        previous = self.written.current(key, body)
        status = agent_status.build_agent_status(memory.observed_generation, spec_regions, figures, problems,
                                                 previous)
        if not agent_status.status_differs(status, previous):
            memory.wording_since = None
            return
        now = time.monotonic()
        settings = self.rt.settings
        backlog = self.backlog()  # a busy operator coalesces more: fewer writes for a busy apiserver
        # What a reader acts on (the conditions, the generation they describe) goes out quickly; figures alone
        # (workers coming up, sessions) coalesce longer: at 5,000 agents every Deployment status change was
        # another write to a busy apiserver.
        if agent_status.meaning_differs(status, previous):
            due = memory.status_written_at + settings.status_min_interval_seconds * backlog
        elif agent_status.figures_differ(status, previous):
            due = memory.status_written_at + settings.status_figures_interval_seconds * backlog
        else:
            # A condition's wording alone: an agent's regions settle one after another, seconds apart, often
            # minutes after the last write (a pool's first start), so no interval since that write holds them
            # together; a short wait from the first such change lets the next one (the agent Ready) carry it.
            memory.wording_since = memory.wording_since or now
            due = max(memory.status_written_at + settings.status_min_interval_seconds * backlog,
                      memory.wording_since + settings.status_wording_delay_seconds * backlog)
        wait = due - now
        if wait > 0:
            # Coalesce: whatever else changes meanwhile goes out in the same, later write.
            self.refresh_status_later(namespace, name, wait)
            return
        try:
            await self.rt.client.merge_patch("VoiceAgent", name, {"status": status}, namespace,
                                             subresource="status")
        except NotFound:
            self.forget(key)
            return
        memory.status_written_at, memory.wording_since = now, None
        self.written.wrote(key, body, status)
        self.rt.metrics.status_writes.labels(kind="VoiceAgent").inc()

    def _export(self, namespace: str, name: str, figures: list[agent_status.RegionFigures]) -> None:
        metrics = self.rt.metrics
        for figure in figures:
            pool = self.rt.pools.get((namespace, name, figure.name))
            if pool is not None:
                pool_labels = (pool.tenant, pool.agent, pool.region)
                metrics.desired.labels(*pool_labels).set(figure.desired)
                metrics.ready.labels(*pool_labels).set(figure.ready)
                metrics.active.labels(*pool_labels).set(figure.active)
                metrics.free.labels(*pool_labels).set(figure.free)


def _validated_spec(spec: dict[str, Any]) -> VoiceAgentSpec | Problem:
    try:
        return VoiceAgentSpec.model_validate(spec)
    except ValidationError as error:
        first = error.errors()[0]
        problem = field_problem_of(first)
        if problem is not None:  # a check over the whole spec: it names its own field
            return Problem("InvalidSpec", f"spec.{problem.field}: {problem.message}", blocking=True)
        where = ".".join(str(part) for part in first.get("loc", ()))
        return Problem("InvalidSpec", f"spec.{where}: {first.get('msg')}", blocking=True)


async def _apply_all(applier: Any, manifests: list[dict[str, Any]]) -> None:
    """Apply concurrently; every apply finishes (they are idempotent), then the first failure is raised."""
    results = await asyncio.gather(*(applier.apply(m) for m in manifests), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result

