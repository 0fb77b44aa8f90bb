"""No voluntary eviction of a worker with a live call: node drains and autoscaler scale-down wait for its calls.

After every load sweep (voxfleet.operator.load_poller, the same reads the scaler uses: no second poll) each
worker pod is marked from its calls, as Agones marks allocated GameServers:

- busy (a call in progress): label SAFE_TO_EVICT=false, which the pool's PodDisruptionBudget selects
  (maxUnavailable 0: the eviction API answers 429 and `kubectl drain` retries), and the cluster autoscaler's
  annotation safe-to-evict=false (it does not pick the node for scale-down at all);
- idle: both "true" (no budget holds it, and the autoscaler may remove it despite its emptyDir). The
  Deployment replaces an evicted idle worker on another node.
- unknown (never answered, or silent too long): left as it is. A worker is never called safe on a guess;
- its process ended (a container not running, or restarted since): idle, whatever its last report said. Calls
  live in the process, and the reports it gave before it ended say nothing about the one that replaces it (a
  drained worker exits, the kubelet restarts it: without this its node's drain would wait for the stale report
  to age out and the new process to answer).

A busy worker on a node that is leaving (cordoned, as `kubectl drain` does first, or tainted by the cluster
autoscaler or Karpenter before they evict) is told to drain (`POST /v1/drain`): it takes no new calls (readyz
503, so the gateway places none there), finishes its live ones and exits; the next sweep sees it idle, marks it
safe, and the drain's next eviction attempt goes through. The operator also evicts that one pod itself once its
process has ended (the eviction API, so budgets still apply): the kubelet restarts a drained worker in place, and
a restarted worker on a cordoned node would warm up and take calls there before the drain's next attempt. It
evicts nothing else: a cordon alone moves no idle worker. A refused eviction with no cordon or taint before it
(the descheduler) is simply refused: the worker keeps serving and moves when idle.

Writes happen only when a mark must change (a call starts on an idle worker, the last one ends), never per
sweep. The window between a call's start and its mark is one poll interval; a worker evicted in it still drains
its calls on SIGTERM (terminationGracePeriodSeconds covers maxSessionSeconds).
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import structlog

from voxfleet.api import labels
from voxfleet.kube.errors import KubeApiError, NotFound
from voxfleet.kube.resources import resource_path
from voxfleet.operator.cluster_view import PodView
from voxfleet.operator.load_poller import WorkerCalls
from voxfleet.operator.runtime import Runtime
from voxfleet.operator.worker_drain import DrainRefused, WorkerDrainClient

log = structlog.get_logger("voxfleet.operator.eviction")

Mark = Literal["true", "false"]
DRAIN_ASK_AGAIN_SECONDS = 10.0  # a worker that still does not say draining this long after we asked
# Our own write shows in the pod informer a moment later (seconds on a busy apiserver): the same mark is not sent
# again within this time. After it, a mark someone else changed is put back.
MARK_AGAIN_SECONDS = 10.0


def wanted_mark(calls: WorkerCalls) -> Mark | None:
    """What the pod should carry: "false" (not safe to evict) with a call in progress, "true" when idle, None
    when its calls are unknown (keep the mark it has)."""
    if calls.active is None:
        return None
    return "false" if calls.active > 0 else "true"


def mark_after_process_end(calls: WorkerCalls, report_at: float | None, ended_at: float | None) -> Mark | None:
    """wanted_mark, but a report read before the worker's process was last seen ended (ended_at, monotonic)
    counts for nothing: that process and its calls are gone, and a new one holds no call before it reports."""
    if ended_at is not None and (report_at is None or report_at <= ended_at):
        return "true"
    return wanted_mark(calls)


def needs_drain(calls: WorkerCalls, node_leaving: bool) -> bool:
    """A busy worker on a leaving node that is not draining yet. Idle ones are evicted at once and need none."""
    return node_leaving and bool(calls.active) and not calls.draining


class EvictionGuard:
    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.drains = WorkerDrainClient(runtime.platform.worker_port, timeout=max(2.0,
                                                                                   runtime.settings.poll_timeout_seconds))
        self._in_flight: set[tuple[str, str]] = set()  # (uid, what) of writes and drain requests under way
        self._asked: dict[str, float] = {}  # uid -> when it was told to drain
        self._restarts: dict[str, int] = {}  # uid -> container restarts last seen
        self._ended: dict[str, float] = {}  # uid -> when its worker process was last seen ended (monotonic)
        self._written: dict[str, tuple[Mark, float]] = {}  # uid -> the mark we last sent, and when
        self._tasks: set[asyncio.Task] = set()
        runtime.poller.add_listener(self.on_sweep)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.drains.close()

    # --- after every sweep (synchronous, quick: writes go to tasks) --------------------------------------------

    def on_sweep(self, sweep: list[WorkerCalls]) -> None:
        now = time.monotonic()
        protected = 0
        seen = set()
        for calls in sweep:
            seen.add(calls.uid)
            pod = self.rt.view.pods.get(calls.namespace, calls.pod)
            if pod is None or pod.uid != calls.uid or pod.terminating:
                continue
            if not pod.running or pod.restarts != self._restarts.setdefault(pod.uid, pod.restarts):
                self._ended[pod.uid] = now
                self._restarts[pod.uid] = pod.restarts
            report = self.rt.poller.reports.get(pod.uid)
            mark = mark_after_process_end(calls, report.at if report is not None else None, self._ended.get(pod.uid))
            if (mark or pod.safe_to_evict) == "false":
                protected += 1
            written, written_at = self._written.get(pod.uid, (None, 0.0))
            if mark is not None and (pod.safe_to_evict, pod.autoscaler_safe_to_evict) != (mark, mark) and not (
                    written == mark and now - written_at < MARK_AGAIN_SECONDS):
                self._written[pod.uid] = (mark, now)
                self._spawn((pod.uid, "mark"), self._mark(pod, mark, calls.active))
            node = self.rt.view.nodes.get(None, pod.node) if pod.node else None
            leaving = bool(node and node.leaving)
            if needs_drain(calls, leaving) and now - self._asked.get(pod.uid, -1e9) > DRAIN_ASK_AGAIN_SECONDS:
                self._asked[pod.uid] = now
                self._spawn((pod.uid, "drain"), self._drain(pod, calls.active or 0))
            elif leaving and pod.safe_to_evict == "true" and self._ended.get(pod.uid, -1.0) > self._asked.get(
                    pod.uid, now):
                self._spawn((pod.uid, "evict"), self._evict(pod))  # drained by us, its process has ended
        for memory in (self._asked, self._restarts, self._ended, self._written):
            for uid in [uid for uid in memory if uid not in seen]:
                del memory[uid]
        self.rt.metrics.eviction_protected.set(protected)

    def _spawn(self, key: tuple[str, str], work) -> None:
        if key in self._in_flight:
            work.close()  # the same write is under way: the next sweep looks again
            return
        self._in_flight.add(key)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task) -> None:
            self._tasks.discard(finished)
            self._in_flight.discard(key)
        task.add_done_callback(done)

    # --- the writes ----------------------------------------------------------------------------------------------

    async def _mark(self, pod: PodView, mark: Mark, active: int | None) -> None:
        # The uid in a merge patch is a precondition: a new pod that took the name is never marked by mistake.
        patch = {"metadata": {"uid": pod.uid, "labels": {labels.SAFE_TO_EVICT: mark},
                              "annotations": {labels.AUTOSCALER_SAFE_TO_EVICT: mark}}}
        try:
            await self.rt.client.merge_patch("Pod", pod.name, patch, pod.namespace)
        except NotFound:
            return
        except KubeApiError as error:
            log.warning("could not mark worker for eviction safety", namespace=pod.namespace, pod=pod.name,
                        safe_to_evict=mark, error=str(error)[:300])
            return
        self.rt.metrics.eviction_marks.labels(safe_to_evict=mark).inc()
        log.info("worker marked", namespace=pod.namespace, pod=pod.name, node=pod.node, safe_to_evict=mark,
                 active_sessions=active)

    async def _evict(self, pod: PodView) -> None:
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": pod.name, "namespace": pod.namespace},
                "deleteOptions": {"preconditions": {"uid": pod.uid}}}
        try:
            await self.rt.client.request("POST", resource_path("Pod", pod.namespace, pod.name, "eviction"),
                                         body=body)
        except NotFound:
            return
        except KubeApiError as error:
            log.warning("could not evict drained worker", namespace=pod.namespace, pod=pod.name, node=pod.node,
                        error=str(error)[:300])
            return
        self._asked.pop(pod.uid, None)
        self.rt.metrics.worker_drains.labels(result="evicted").inc()
        log.info("drained worker evicted: its calls ended and its node is leaving", namespace=pod.namespace,
                 pod=pod.name, node=pod.node)

    async def _drain(self, pod: PodView, active: int) -> None:
        root = self.rt.poller.root_token()
        if not root or not pod.ip:
            return
        token = self.rt.poller.tokens.token(root, pod.namespace)
        try:
            await self.drains.drain(pod.ip, token)
        except DrainRefused as refused:
            self.rt.metrics.worker_drains.labels(result="failed").inc()
            log.warning("could not ask worker to drain for its leaving node", namespace=pod.namespace, pod=pod.name,
                        node=pod.node, error=str(refused))
            return
        self.rt.metrics.worker_drains.labels(result="ok").inc()
        log.info("worker draining: its node is leaving", namespace=pod.namespace, pod=pod.name, node=pod.node,
                 active_sessions=active)
        self.rt.recorder.normal(self.rt.view.agent(pod.namespace, pod.agent), "DrainingWorker",
                                f"{pod.region}: worker {pod.name} on node {pod.node} (cordoned or being removed)"
                                f" takes no new calls and is evicted when its {active} call(s) end")
