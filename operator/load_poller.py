"""Demand, read like a metrics scrape: `GET /v1/load` on every worker pod, concurrently, with short timeouts.

Each worker is asked with its own namespace's token (voxfleet.api.worker_credentials), derived from the root the
operator reads in the platform namespace: the operator never sends the root to a tenant's pod.

A report stays usable for `stale_after` seconds after the worker's polls start failing (one slow answer must not
look like a drop in demand); after that the worker counts as unknown: neither busy nor removable.

Who else needs each worker's calls (e.g. marking pods with live calls as not safe to evict) subscribes with
`add_listener` and is told after every sweep, from the same reads: no second poll of the workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from pydantic import ValidationError

from voxfleet.api.wire import LoadReport
from voxfleet.api.worker_credentials import NamespaceTokens
from voxfleet.operator.cluster_view import PodView
from voxfleet.operator.load_client import LoadClient, LoadError
from voxfleet.operator.metrics import OperatorMetrics

log = structlog.get_logger("voxfleet.operator.poller")


@dataclass(frozen=True)
class Report:
    load: LoadReport
    at: float  # monotonic time it was read


@dataclass(frozen=True)
class WorkerCalls:
    """One worker pod's calls as of the last sweep."""

    namespace: str
    pod: str
    uid: str
    active: int | None  # None: no fresh report (never answered, or silent longer than stale_after): unknown
    draining: bool


# Called after every sweep with every polled pod; must be quick and must not block (start a task for I/O).
SweepListener = Callable[[list[WorkerCalls]], None]


class LoadPoller:
    def __init__(self, root_token: Callable[[], str | None], *, port: int, timeout: float, concurrency: int,
                 stale_after: float, metrics: OperatorMetrics):
        self.root_token = root_token
        self.tokens = NamespaceTokens()
        self.timeout = timeout
        self.stale_after = stale_after
        self.metrics = metrics
        self.client = LoadClient(port)
        self.reports: dict[str, Report] = {}  # pod uid -> last good report
        self.ever_reported: set[str] = set()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._listeners: list[SweepListener] = []

    def add_listener(self, listener: SweepListener) -> None:
        self._listeners.append(listener)

    def calls(self, pod: PodView, now: float | None = None) -> WorkerCalls:
        """The pod's calls from its last fresh report (active None when unknown)."""
        report = self.fresh(pod.uid, time.monotonic() if now is None else now)
        return WorkerCalls(pod.namespace, pod.name, pod.uid, report.active if report is not None else None,
                           bool(report is not None and report.draining))

    async def close(self) -> None:
        await self.client.close()

    def fresh(self, uid: str, now: float) -> LoadReport | None:
        report = self.reports.get(uid)
        if report is None or now - report.at > self.stale_after:
            return None
        return report.load

    async def poll(self, pods: Iterable[PodView]) -> list[PodView]:
        """Poll every pod with an IP once; returns the pods whose poll failed."""
        root = self.root_token()
        if not root:
            log.warning("no worker token yet: cannot read worker load")
            return []
        targets = [pod for pod in pods if pod.ip]
        results = await asyncio.gather(*(self._poll_one(pod, self.tokens.token(root, pod.namespace))
                                         for pod in targets))
        live = {pod.uid for pod in targets}
        for uid in [uid for uid in self.reports if uid not in live]:
            del self.reports[uid]
        self.ever_reported &= live
        self.client.prune({pod.ip for pod in targets if pod.ip})
        self._tell_listeners(targets)
        return [pod for pod, ok in zip(targets, results) if not ok]

    def _tell_listeners(self, pods: list[PodView]) -> None:
        if not self._listeners:
            return
        now = time.monotonic()
        snapshot = [self.calls(pod, now) for pod in pods]
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the scaler's reads
                log.exception("load sweep listener failed", listener=getattr(listener, "__qualname__", "?"))

    async def _poll_one(self, pod: PodView, token: str) -> bool:
        async with self._semaphore:
            try:
                load = LoadReport.model_validate_json(await self.client.get(pod.ip, token, self.timeout))
            except (LoadError, ValidationError) as error:
                self.metrics.polls.labels(result="error").inc()
                log.debug("load poll failed", pod=pod.name, namespace=pod.namespace, error=str(error)[:200])
                return False
        self.metrics.polls.labels(result="ok").inc()
        self.reports[pod.uid] = Report(load, time.monotonic())
        self.ever_reported.add(pod.uid)
        return True
