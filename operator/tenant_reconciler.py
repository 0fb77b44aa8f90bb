"""One Tenant into its isolated namespace (Namespace, ResourceQuota and LimitRange, NetworkPolicies, RBAC and
the operator's and gateway's RoleBindings, worker ServiceAccount, the namespace's derived worker token), its
status, and its deletion.

A namespace is the Tenant's only if the operator made it for that Tenant: one that already exists without the
Tenant's label (another Tenant's, or anyone else's) is refused with a condition naming spec.namespace.

Deleting a Tenant that still has VoiceAgents is refused: the admission policy answers `kubectl delete` with the
reason, and the finalizer here holds the Tenant (status and an Event say why) if a deletion slips past the
policy. Once the last agent is gone, the namespace is deleted and the finalizer released.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api import labels
from voxfleet.api.tenant import TenantSpec
from voxfleet.operator import conditions
from voxfleet.operator.cluster_view import tenant_namespace
from voxfleet.kube.errors import NotFound
from voxfleet.operator.ownership import Owner
from voxfleet.operator.runtime import Runtime
from voxfleet.operator.spec_checks import Problem
from voxfleet.operator.tenant_builder import QUOTA, build_namespace, build_tenant_objects
from voxfleet.operator.written_status import WrittenStatus

log = structlog.get_logger("voxfleet.operator.tenant")
FINALIZER = "voxfleet.dev/agents-first"
FINALIZER_MANAGER = "voxfleet-operator-finalizer"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
QUOTA_RECOUNT_SECONDS = 40.0
RESERVED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease"}
NOT_ITS_NAMESPACE = {"InvalidNamespace", "NamespaceTaken"}


class TenantReconciler:
    def __init__(self, runtime: Runtime, refresh_status_later: Callable[[str, float], None],
                 backlog: Callable[[], float] = lambda: 1.0):
        self.rt = runtime
        self.refresh_status_later = refresh_status_later  # (name, delay): a status-only run later
        self.backlog = backlog  # 1 when the queue keeps up, up to 10 when it is far behind
        self.status_written_at: dict[str, float] = {}
        self.pending: dict[str, float] = {}  # namespace -> since when its quota waits to be counted
        self.counted: set[str] = set()
        self.written = WrittenStatus()
        # name -> ((uid, generation), problems) of its last full run: a status-only run (an agent came or went)
        # reuses them instead of reading the namespace and re-checking every object (one GET and a dozen
        # applier digests per agent created, at 5,000 agents the Tenants' biggest cost).
        self.last_full: dict[str, tuple[tuple[str, int], list[Problem]]] = {}

    async def reconcile(self, name: str, full: bool) -> float | None:
        body = self.rt.view.tenant(name)
        if body is None:
            self.rt.recorder.forget(f"Tenant//{name}")
            self.written.forget(name)
            self.last_full.pop(name, None)
            self.status_written_at.pop(name, None)
            return None
        namespace = tenant_namespace(body)
        meta = body["metadata"]
        stamp = (meta.get("uid", ""), int(meta.get("generation") or 0))
        remembered = self.last_full.get(name)
        if not full and not meta.get("deletionTimestamp") and namespace not in self.pending and \
                remembered is not None and remembered[0] == stamp:
            return await self._report(body, namespace, list(remembered[1]))
        problems = self._namespace_problems(namespace)
        try:
            spec = TenantSpec.model_validate(body.get("spec") or {})
        except ValidationError as error:
            first = error.errors()[0]
            problems.append(Problem("InvalidSpec", f"spec.{'.'.join(map(str, first.get('loc', ())))}:"
                                                   f" {first.get('msg')}", blocking=True))
            spec = None
        if body["metadata"].get("deletionTimestamp"):
            return await self._deleting(body, namespace)
        if not problems:
            problems += await self._namespace_taken(body, namespace)
        if not problems:
            await self._set_finalizer(name, present=True)
            problems += await self._apply(body, namespace, spec)
        self.last_full[name] = (stamp, problems)
        return await self._report(body, namespace, problems)

    async def _report(self, body: dict[str, Any], namespace: str, problems: list[Problem]) -> float | None:
        if any(p.reason in NOT_ITS_NAMESPACE for p in problems):
            # Not its namespace: it reports none and counts no agents there (the agents are another's, and a
            # count would make the deletion policy hold this Tenant for them).
            await self._status(body, "", problems, agents=0)
            return None
        await self._status(body, namespace, problems)
        return 0.5 if namespace in self.pending else None

    def _namespace_problems(self, namespace: str) -> list[Problem]:
        if not DNS_LABEL.match(namespace):
            return [Problem("InvalidNamespace", f"namespace {namespace!r} is not a DNS label (at most 63 lowercase"
                                                " letters, digits and '-'); set spec.namespace", blocking=True)]
        if namespace in RESERVED_NAMESPACES or namespace.startswith("kube-") or \
                namespace == self.rt.platform.platform_namespace:
            return [Problem("InvalidNamespace", f"namespace {namespace!r} is reserved for the cluster or the"
                                                " platform; set another spec.namespace", blocking=True)]
        return []

    async def _namespace_taken(self, body: dict[str, Any], namespace: str) -> list[Problem]:
        """A namespace that exists without this Tenant's label is not this Tenant's (checked before the finalizer
        is set, so such a Tenant never holds anything up when it is deleted)."""
        existing = await self.rt.client.get_or_none("Namespace", namespace)
        holder = ((existing or {}).get("metadata", {}).get("labels") or {}).get(labels.TENANT)
        if existing is None or holder == body["metadata"]["name"]:
            return []
        whose = f"Tenant {holder}" if holder else "someone else (it has no voxfleet.dev/tenant label)"
        return [Problem("NamespaceTaken", f"spec.namespace: namespace {namespace} already exists and belongs to"
                                          f" {whose}; set another spec.namespace", blocking=True)]

    async def _apply(self, body: dict[str, Any], namespace: str, spec: TenantSpec) -> list[Problem]:
        owner = Owner.of(body)
        await self.rt.applier.apply(build_namespace(owner, namespace))
        token = self.rt.view.worker_token()  # the root: only a namespace's derived token is written there
        for manifest in build_tenant_objects(owner, namespace, spec, self.rt.platform, self.rt.settings, token):
            await self.rt.applier.apply(manifest)
        self.rt.view.secrets.watch(namespace)  # keys and labels of its Secrets, now that the operator may read them
        if namespace in self.pending or namespace not in self.counted:
            # Until the quota controller has counted usage, the apiserver refuses every VoiceAgent create.
            quota = await self.rt.client.get_or_none("ResourceQuota", QUOTA, namespace) or {}
            wanted = set(((quota.get("spec") or {}).get("hard") or {}))
            if wanted and wanted <= set(((quota.get("status") or {}).get("used") or {})):
                self.pending.pop(namespace, None)
                self.counted.add(namespace)
            elif time.monotonic() - self.pending.setdefault(namespace, time.monotonic()) > QUOTA_RECOUNT_SECONDS:
                # A quota made before the quota controller discovered the VoiceAgent CRD (a fresh cluster) is
                # only recounted at its next full resync (minutes): recreate it so it is counted now.
                log.info("recreating a quota the quota controller has not counted", namespace=namespace)
                await self.rt.applier.delete("ResourceQuota", namespace, QUOTA)
                self.pending[namespace] = time.monotonic()
        if token is None:
            return [Problem("WorkerTokenMissing", f"Secret {self.rt.platform.worker_token_secret} (key"
                                                  f" {labels.WORKER_TOKEN_KEY}) is missing in namespace"
                                                  f" {self.rt.platform.platform_namespace}; worker pods can't"
                                                  " start until it exists")]
        return []

    async def _deleting(self, body: dict[str, Any], namespace: str) -> float | None:
        name = body["metadata"]["name"]
        if FINALIZER not in (body["metadata"].get("finalizers") or []):
            return None
        existing = await self.rt.client.get_or_none("Namespace", namespace)
        if existing is not None and (existing["metadata"].get("labels") or {}).get(labels.TENANT) != name:
            # Another's namespace (a finalizer set by an older operator): nothing here is this Tenant's.
            await self._set_finalizer(name, present=False)
            return None
        # Ask the apiserver, not the cache: this decision deletes a namespace.
        agents = (await self.rt.client.list("VoiceAgent", namespace)).get("items") or []
        if agents:
            names = ", ".join(sorted(a["metadata"]["name"] for a in agents)[:10])
            problem = Problem("DeletionBlocked", f"Tenant {name} still has {len(agents)} VoiceAgent(s) in namespace"
                                                 f" {namespace} ({names}); delete them first. The Tenant stays until"
                                                 " then, and no call is cut.", blocking=True)
            await self._status(body, namespace, [problem], agents=len(agents))
            return self.rt.settings.recheck_seconds
        existing = await self.rt.client.get_or_none("Namespace", namespace)
        if existing is not None and (existing["metadata"].get("labels") or {}).get(labels.TENANT) == name:
            log.info("tenant deleted, deleting its namespace", tenant=name, namespace=namespace)
            await self.rt.client.delete("Namespace", namespace)
        self.rt.applier.forget(lambda key: key[1] == namespace or (key[0] == "Namespace" and key[2] == namespace))
        await self.rt.view.secrets.unwatch(namespace)
        await self._set_finalizer(name, present=False)
        return None

    async def _set_finalizer(self, name: str, *, present: bool) -> None:
        body = self.rt.view.tenant(name) or {}
        if (FINALIZER in (body.get("metadata", {}).get("finalizers") or [])) == present:
            return
        # Server-side apply under a manager of its own: adds or drops our entry, never touches others'.
        manifest = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name}}
        if present:
            manifest["metadata"]["finalizers"] = [FINALIZER]
        try:
            await self.rt.client.apply(manifest, field_manager=FINALIZER_MANAGER)
        except NotFound:
            return

    async def _status(self, body: dict[str, Any], namespace: str, problems: list[Problem],
                      agents: int | None = None) -> None:
        name = body["metadata"]["name"]
        generation = int(body["metadata"].get("generation") or 0)
        blocking = [p for p in problems if p.blocking]
        if blocking:
            ready = conditions.Wanted("Ready", "False", blocking[0].reason, blocking[0].message)
        elif namespace in self.pending:
            ready = conditions.Wanted("Ready", "False", "Provisioning", f"waiting for the quota controller to count"
                                                                        f" namespace {namespace}")
        else:
            ready = conditions.Wanted("Ready", "True", "Provisioned", f"namespace {namespace} has its quota,"
                                                                      " network policies, RBAC and worker token")
        degraded = (conditions.Wanted("Degraded", "True", problems[0].reason, "; ".join(p.message for p in problems))
                    if problems else conditions.Wanted("Degraded", "False", "AsExpected", ""))
        previous = self.written.current(name, body)
        status = {
            "observedGeneration": generation,
            "namespace": namespace,
            "agents": len(self.rt.view.agents_in(namespace)) if agents is None else agents,
            "conditions": conditions.merge(previous.get("conditions"), [ready, degraded], generation),
        }
        await self.rt.recorder.problems(f"Tenant//{name}", body, [(p.reason, p.message) for p in problems])
        if all(previous.get(k) == v for k, v in status.items()):
            return
        if self._count_only(status, previous):
            # A count that stays above zero coalesces like an agent's figures (one write per agent created was a
            # third of the operator's status writes at 5,000 agents); one that reaches or leaves zero goes out at
            # once: the deletion policy refuses `kubectl delete tenant` on it.
            wait = (self.status_written_at.get(name, 0.0) + self.rt.settings.status_figures_interval_seconds
                    * self.backlog() - time.monotonic())
            if wait > 0:
                self.refresh_status_later(name, wait)
                return
        try:
            await self.rt.client.merge_patch("Tenant", name, {"status": status}, subresource="status")
        except NotFound:
            return
        self.status_written_at[name] = time.monotonic()
        self.written.wrote(name, body, status)
        self.rt.metrics.status_writes.labels(kind="Tenant").inc()

    @staticmethod
    def _count_only(status: dict[str, Any], previous: dict[str, Any]) -> bool:
        """Only the agent count moved, and it stayed above zero."""
        others_same = all(previous.get(k) == v for k, v in status.items() if k != "agents")
        return others_same and bool(previous.get("agents")) and bool(status.get("agents"))
