"""Kubernetes Events about Tenants and VoiceAgents (what `kubectl describe` shows).

- Warnings: a problem is posted when it appears (or its message changes), not on every reconcile: the caller
  passes the current set of problems and the recorder remembers what it already said per object.
- Normal events say what the operator did: a pool scaled (ScaledUp, ScaledDown), a new worker config rolling out
  and done (RollingOut, RolledOut), a region that left the spec draining and removed (DrainingRegion,
  RegionDrained). They are posted in the background, a few at a time: a scaling round or a reconcile never waits
  for one, and a burst (a thousand pools scaling at once) cannot crowd out the writes that matter.
- The same event for the same object within AGGREGATE_SECONDS bumps the existing Event's count and lastTimestamp,
  as client-go's recorder does, instead of adding another object.

Messages carry names and figures the operator chose or the schema bounded, never a value from a Secret.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import structlog

from voxfleet.kube.client import KubeClient
from voxfleet.operator.conditions import now_iso
from voxfleet.operator.metrics import OperatorMetrics
from voxfleet.operator.ownership import MANAGER

log = structlog.get_logger("voxfleet.operator.events")
EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS = "default"  # where kubectl looks for events of cluster-scoped objects
AGGREGATE_SECONDS = 600.0
REMEMBERED_EVENTS = 4096  # aggregation memory: the oldest series are forgotten first
BACKGROUND_POSTS = 4  # Normal events in flight at once

SeriesKey = tuple[str, str, str, str]  # (involved uid, type, reason, message)


class EventRecorder:
    def __init__(self, client: KubeClient, metrics: OperatorMetrics, instance: str):
        self.client = client
        self.metrics = metrics
        self.instance = instance
        self.said: dict[str, set[tuple[str, str]]] = {}  # "Kind/namespace/name" -> {(reason, message)}
        self._series: OrderedDict[SeriesKey, tuple[str, str, int, float]] = OrderedDict()  # -> (ns, name, count, at)
        self._pending: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(BACKGROUND_POSTS)

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

    def normal(self, body: dict[str, Any] | None, reason: str, message: str) -> None:
        """Post a Normal event soon, without waiting for it (body None: the object is gone, nothing to say)."""
        if body is None:
            return

        async def post_in_turn() -> None:
            async with self._slots:
                await self.post(body, reason, message, "Normal")

        task = asyncio.get_running_loop().create_task(post_in_turn(), name=f"event {reason}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self, timeout: float = 2.0) -> None:
        """At shutdown: give the Normal events still being posted `timeout` seconds, then drop the rest (before
        the client closes under them)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def post(self, body: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = body["metadata"]
        message = message[:1024]
        series: SeriesKey = (meta["uid"], kind, reason, message)
        try:
            if not await self._count_again(series):
                await self._create(body, series)
            self.metrics.events.labels(reason=reason).inc()
        except Exception as error:  # noqa: BLE001 - an Event is informative; never fail a reconcile for it
            log.warning("could not post event", reason=reason, object=meta["name"], error=str(error)[:300])

    async def _count_again(self, series: SeriesKey) -> bool:
        """The same event was posted recently: bump its count. False when there is none to bump."""
        known = self._series.get(series)
        if known is None or time.monotonic() - known[3] > AGGREGATE_SECONDS:
            return False
        namespace, name, count, _ = known
        try:
            await self.client.merge_patch("Event", name, {"count": count + 1, "lastTimestamp": now_iso()},
                                          namespace)
        except Exception:  # noqa: BLE001 - gone (events expire after an hour) or refused: post a new one
            self._series.pop(series, None)
            return False
        self._remember(series, namespace, name, count + 1)
        return True

    async def _create(self, body: dict[str, Any], series: SeriesKey) -> None:
        meta = body["metadata"]
        _, kind, reason, message = series
        namespace = meta.get("namespace") or EVENTS_NAMESPACE_FOR_CLUSTER_OBJECTS
        now = now_iso()
        created = await self.client.create({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
            "involvedObject": {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                               "namespace": meta.get("namespace") or "", "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        })
        self._remember(series, namespace, created["metadata"]["name"], 1)

    def _remember(self, series: SeriesKey, namespace: str, name: str, count: int) -> None:
        self._series[series] = (namespace, name, count, time.monotonic())
        self._series.move_to_end(series)
        while len(self._series) > REMEMBERED_EVENTS:
            self._series.popitem(last=False)
