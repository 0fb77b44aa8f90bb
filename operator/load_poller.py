"""Demand, read like a metrics scrape: `GET /v1/load` on every worker pod, concurrently, with short timeouts.

Each worker is asked with its own namespace's token (voxfleet.api.worker_credentials), derived from the root the
operator reads in the platform namespace: the operator never sends the root to a tenant's pod.

A report stays usable for `stale_after` seconds after the worker's polls start failing (one slow answer must not
look like a drop in demand); after that the worker counts as unknown: neither busy nor removable.
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
        return [pod for pod, ok in zip(targets, results) if not ok]

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
