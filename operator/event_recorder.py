"""Kubernetes Events about Tenants and VoiceAgents (what `kubectl describe` shows).

An Event is posted when a problem appears (or its message changes), not on every reconcile: the caller passes
the current set of problems and the recorder remembers what it already said per object.
"""

from __future__ import annotations

from typing import Any

import structlog

from voxfleet.operator.conditions import now_iso
from voxfleet.operator.kube_client import KubeClient
from voxfleet.operator.metrics import OperatorMetrics
from voxfleet.operator.ownership import MANAGER

log = structlog.get_logger("voxfleet.operator.events")
EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS = "default"  # where kubectl looks for events of cluster-scoped objects


class EventRecorder:
    def __init__(self, client: KubeClient, metrics: OperatorMetrics, instance: str):
        self.client = client
        self.metrics = metrics
        self.instance = instance
        self.said: dict[str, set[tuple[str, str]]] = {}  # "Kind/namespace/name" -> {(reason, message)}

    async def problems(self, key: str, body: dict[str, Any], problems: list[tuple[str, str]]) -> None:
        """Post a Warning for each (reason, message) not yet reported for this object."""
        current = set(problems)
        before = self.said.get(key, set())
        self.said[key] = current  # a problem that goes away and comes back is reported again
        for reason, message in problems:
            if (reason, message) not in before:
                await self.post(body, reason, message, "Warning")

    def forget(self, key: str) -> None:
        self.said.pop(key, None)

    async def post(self, body: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = body["metadata"]
        namespace = meta.get("namespace") or EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS
        now = now_iso()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                               "namespace": meta.get("namespace") or "", "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(event)
            self.metrics.events.labels(reason=reason).inc()
        except Exception as error:  # noqa: BLE001 - an Event is informative; never fail a reconcile for it
            log.warning("could not post event", reason=reason, object=meta["name"], error=str(error)[:300])
