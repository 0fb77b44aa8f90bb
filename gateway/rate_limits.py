"""Per-tenant request rate limits: a token bucket per tenant, in each replica.

Each replica enforces the configured rate on its own; behind a load balancer with R replicas a tenant may get
up to R times the rate, so platform teams set the per-replica figure accordingly.
"""

from __future__ import annotations

import math
import time


class TenantRateLimiter:
    def __init__(self, rate_per_second: float, burst: int, *, max_tenants: int = 100_000):
        self.rate = rate_per_second
        self.burst = float(burst)
        self.max_tenants = max_tenants
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, last refill time)

    def try_acquire(self, tenant: str, now: float | None = None) -> float:
        """0 when the request may go ahead; otherwise the seconds until a token is free (Retry-After)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(tenant, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[tenant] = (tokens - 1.0, now)
            return 0.0
        self._buckets[tenant] = (tokens, now)
        if len(self._buckets) > self.max_tenants:  # only authenticated tenants get here; bound it anyway
            self._buckets.clear()
        return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after_header(wait_seconds: float) -> str:
        return str(max(1, math.ceil(wait_seconds)))
