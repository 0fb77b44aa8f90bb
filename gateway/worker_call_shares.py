"""Each tenant's share of the gateway's connections to workers: at most N calls to one tenant's workers in flight.

All tenants' calls go through one connection pool (worker_max_connections). Without shares, a tenant whose
workers hang (a bad image, a stuck pipeline, on purpose) would hold a connection per call for the whole call
timeout, and with enough of its requests in flight it would take the whole pool: every other tenant's dispatch
would then wait for a free connection. With a share below the pool size, the hung tenant waits on its own
share and the rest of the pool stays free for the others. A call that waits longer than its own timeout for
its tenant's share fails like an unreachable worker (its caller tries the next candidate or answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ShareExhausted(Exception):
    """The tenant's calls in flight stayed at its share for the whole wait."""


class TenantCallShares:
    """Shares are keyed by the worker's namespace: a worker is trusted only in its Tenant's namespace
    (worker_registry.py), and a namespace has one owner, so a namespace is a tenant here."""

    def __init__(self, per_tenant: int):
        self.per_tenant = per_tenant
        self._shares: dict[str, asyncio.Semaphore] = {}

    def in_flight(self, tenant: str) -> int:
        share = self._shares.get(tenant)
        return 0 if share is None else self.per_tenant - share._value  # noqa: SLF001 - a gauge, no logic on it

    @contextlib.asynccontextmanager
    async def held(self, tenant: str, wait_seconds: float) -> AsyncIterator[None]:
        share = self._shares.get(tenant)
        if share is None:
            share = self._shares[tenant] = asyncio.Semaphore(self.per_tenant)
        if share.locked():  # only a full share pays for a timed wait; the usual path takes it at once
            try:
                await asyncio.wait_for(share.acquire(), wait_seconds)
            except asyncio.TimeoutError:
                raise ShareExhausted(tenant) from None
        else:
            await share.acquire()
        try:
            yield
        finally:
            share.release()
