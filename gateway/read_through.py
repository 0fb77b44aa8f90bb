"""Asking the apiserver about a name the gateway's watches have not shown yet, within a budget.

A key or Tenant made a moment ago reaches every gateway replica through its watch some milliseconds (under load,
seconds) later. Until then its first requests would be refused as unknown, which a platform team scripting
"create tenant, create key, call" meets at once. So an unknown name of the right shape is looked up with one GET.
Anyone can send such names, so the lookups have a budget: a token bucket for all of them (an attacker spraying
random key ids costs the apiserver at most `per_second` GETs), and a name found missing is not asked again for
`miss_ttl_s` (retries of one bad key cost one GET). Past the budget the answer is "unknown", as before.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from voxfleet.gateway.rate_limits import TenantRateLimiter

BUCKET = "read-through"  # one bucket shared by every name


class ReadThroughBudget:
    def __init__(self, per_second: float = 10.0, burst: int = 20, *, miss_ttl_s: float = 5.0,
                 max_misses: int = 10_000):
        self._bucket = TenantRateLimiter(per_second, burst, max_tenants=1)
        self._miss_ttl_s = miss_ttl_s
        self._max_misses = max_misses
        self._misses: OrderedDict[str, float] = OrderedDict()  # name -> when it was found missing

    def may_ask(self, name: str, now: float | None = None) -> bool:
        """True when a GET for `name` is within the budget (and takes its share of it)."""
        now = time.monotonic() if now is None else now
        missed = self._misses.get(name)
        if missed is not None and now - missed < self._miss_ttl_s:
            return False
        return self._bucket.try_acquire(BUCKET, now) == 0

    def missing(self, name: str, now: float | None = None) -> None:
        """`name` was asked for and does not exist: do not ask again for a while (bounded memory)."""
        self._misses[name] = time.monotonic() if now is None else now
        self._misses.move_to_end(name)
        while len(self._misses) > self._max_misses:
            self._misses.popitem(last=False)
