"""kopf handlers for Tenants: keep the operator's copy current and queue the Tenant (and its agents, whose
allowed regions may have changed) when its spec, finalizers or deletion state changed. The work happens in
TenantReconciler."""

from __future__ import annotations

from typing import Any

import kopf

from voxfleet.api.tenant import PLURAL
from voxfleet.api.voiceagent import GROUP, VERSION
from voxfleet.operator.cluster_view import tenant_namespace
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime


def _trigger(body: dict[str, Any] | None) -> tuple[Any, ...]:
    meta = (body or {}).get("metadata") or {}
    return meta.get("generation"), meta.get("deletionTimestamp"), tuple(meta.get("finalizers") or ())


def register(registry: kopf.OperatorRegistry, runtime: Runtime, queue: ReconcileQueue) -> None:
    tenants = runtime.view.tenants

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def tenant_event(event: dict[str, Any], **_: Any) -> None:
        body = event["object"]
        name = body["metadata"]["name"]
        before = tenants.get(name)
        if event["type"] == "DELETED":
            tenants.pop(name, None)
        else:
            tenants[name] = body
        if event["type"] != "DELETED" and _trigger(before) == _trigger(body):
            return
        queue.add((TENANT, name), full=True)
        if _trigger(before)[0] != _trigger(body)[0]:
            for agent in runtime.view.agents_in(tenant_namespace(body)):
                queue.add((AGENT, agent["metadata"]["namespace"], agent["metadata"]["name"]), full=True)
