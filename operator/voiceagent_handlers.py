"""kopf handlers for VoiceAgents: keep the operator's copy current and queue a reconcile when the spec (its
generation) or the deletion state changed. Everything else happens in AgentReconciler."""

from __future__ import annotations

from typing import Any

import kopf

from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION
from voxfleet.operator.reconcile_queue import ReconcileQueue
from voxfleet.operator.runtime import AGENT, TENANT, Runtime


def _generation(body: dict[str, Any] | None) -> tuple[Any, Any]:
    meta = (body or {}).get("metadata") or {}
    return meta.get("generation"), meta.get("deletionTimestamp")


def register(registry: kopf.OperatorRegistry, runtime: Runtime, queue: ReconcileQueue) -> None:
    agents = runtime.view.agents

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def voiceagent_event(event: dict[str, Any], **_: Any) -> None:
        body = event["object"]
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        before = agents.get(key)
        if event["type"] == "DELETED":
            agents.pop(key, None)
        else:
            agents[key] = body
        if event["type"] == "DELETED" or _generation(before) != _generation(body):
            queue.add((AGENT, *key), full=True)
        if before is None or event["type"] == "DELETED":
            tenant = runtime.view.tenant_for_namespace(key[0])
            if tenant is not None:  # its agent count changed
                queue.add((TENANT, tenant["metadata"]["name"]), full=False)
