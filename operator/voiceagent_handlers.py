"""What a change of a VoiceAgent (from the VoiceAgent informer) queues: a full reconcile when its spec (its
generation) or its deletion state changed, and a status refresh of its Tenant when it appeared or went (the
Tenant's agent count). Status-only changes (our own status writes among them) queue nothing. Everything else
happens in AgentReconciler."""

from __future__ import annotations

from typing import Any

from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime


def _generation(body: dict[str, Any] | None) -> tuple[Any, Any]:
    meta = (body or {}).get("metadata") or {}
    return meta.get("generation"), meta.get("deletionTimestamp")


def register(runtime: Runtime, queue: ReconcileQueue) -> None:
    view = runtime.view

    def voiceagent_changed(kind: str, key: tuple[str, str], old: Any, new: Any) -> None:
        if kind != "VoiceAgent":
            return
        if new is None or _generation(old) != _generation(new):
            queue.add((AGENT, *key), full=True)
        if old is None or new is None:
            tenant = view.tenant_for_namespace(key[0])
            if tenant is not None:  # its agent count changed
                queue.add((TENANT, tenant["metadata"]["name"]), full=False)

    view.listeners.append(voiceagent_changed)
