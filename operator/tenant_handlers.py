"""What a change of a Tenant (from the Tenant informer) queues: the Tenant, when its spec, finalizers or deletion
state changed, and its agents too when its spec did (their allowed regions may have changed). Status-only changes
(our own status writes among them) queue nothing. The work happens in TenantReconciler."""

from __future__ import annotations

from typing import Any

from voxfleet.operator.cluster_view import tenant_namespace
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime


def _trigger(body: dict[str, Any] | None) -> tuple[Any, ...]:
    meta = (body or {}).get("metadata") or {}
    return meta.get("generation"), meta.get("deletionTimestamp"), tuple(meta.get("finalizers") or ())


def register(runtime: Runtime, queue: ReconcileQueue) -> None:
    view = runtime.view

    def tenant_changed(kind: str, key: tuple[str, str], old: Any, new: Any) -> None:
        if kind != "Tenant" or (new is not None and _trigger(old) == _trigger(new)):
            return
        name = key[1]
        queue.add((TENANT, name), full=True)
        if new is not None and _trigger(old)[0] != _trigger(new)[0]:
            for agent in view.agents_in(tenant_namespace(new)):
                queue.add((AGENT, agent["metadata"]["namespace"], agent["metadata"]["name"]), full=True)

    view.listeners.append(tenant_changed)
