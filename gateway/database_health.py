"""Does the store answer? A `SELECT 1` every couple of seconds, for /readyz and Prometheus.

A gateway whose database is down keeps serving: sessions are placed and live calls go on (they never need it);
what needs the store (history, webhooks, usage) fails on its own with a 503. Leaving the load balancer's rotation
for it would cut every replica at once and the whole API with them, so /readyz stays 200 and says "degraded", with
`database: down`, and `voxfleet_gateway_database_up` goes to 0 (the alert's signal). One answer brings it back: the
pool's pre-ping has by then replaced the connections the outage broke.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import CollectorRegistry, Gauge

from voxfleet.store.database import Database

log = structlog.get_logger(__name__)


class DatabaseHealth:
    def __init__(self, database: Database | None, registry: CollectorRegistry, *, period: float = 2.0,
                 timeout: float = 2.0):
        self.database = database
        self.period = period
        self.timeout = timeout
        self.up: bool | None = None  # None: not probed yet
        self.problem = ""  # the last failure's kind (an exception class), never its message
        # Registered only with a database: a gateway configured without one has nothing to report.
        self.up_gauge = None if database is None else Gauge(
            "voxfleet_gateway_database_up",
            "1 when the gateway's store (PostgreSQL) answers its probe, 0 when it does not (history, webhooks and"
            " usage answer 503; calls go on).", registry=registry)
        self._task: asyncio.Task | None = None

    @property
    def configured(self) -> bool:
        return self.database is not None

    def status(self) -> str:
        """'not_configured', 'unknown' (not probed yet), 'up' or 'down'."""
        if self.database is None:
            return "not_configured"
        return "unknown" if self.up is None else ("up" if self.up else "down")

    async def probe(self) -> bool:
        assert self.database is not None
        up = await self.database.ping(self.timeout)
        if up != self.up:
            if up:
                log.info("database answers", was=self.status())
            else:
                log.warning("database does not answer", problem=self.database.last_problem)
        self.up = up
        self.problem = "" if up else self.database.last_problem
        if self.up_gauge is not None:
            self.up_gauge.set(1 if up else 0)
        return up

    async def start(self) -> None:
        """The first probe (not waited for longer than its timeout), then one every period."""
        if self.database is None:
            return
        await self.probe()
        self._task = asyncio.create_task(self._loop(), name="database probe")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            with contextlib.suppress(Exception):
                await self.probe()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
