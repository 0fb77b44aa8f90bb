"""When to try a request again, and after how long: 429 and 5xx answers, honouring Retry-After.

The apiserver answers 429 when API Priority and Fairness sheds a request (it was not executed: always safe to
send again, after the Retry-After it names) and 5xx while it or an aggregated API is unhealthy. A 5xx after a
POST may have been executed, so a create is only sent again when the server said when (Retry-After), which it
does only for requests it refused before doing anything; every other verb the layer sends is idempotent (GET,
PUT with a resourceVersion, DELETE, server-side apply, merge patch of fields). Waits grow exponentially with
jitter so that a fleet of clients refused at once does not come back at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Backoff:
    """retries: how many times a request is sent again; base/cap: the exponential wait (seconds) without a
    Retry-After; max_retry_after: the longest Retry-After obeyed (a longer one is cut to it)."""

    retries: int = 6
    base: float = 0.1
    cap: float = 5.0
    max_retry_after: float = 10.0

    def wait(self, attempt: int) -> float:
        """The wait before retry number `attempt` (0-based): base*2^attempt, jittered to 50-100%, capped."""
        ceiling = min(self.cap, self.base * (2 ** attempt))
        return ceiling * random.uniform(0.5, 1.0)

    def retry_delay(self, method: str, status: int, retry_after: str | None, attempt: int) -> float | None:
        """Seconds to wait before sending this request again, or None when it must not be retried."""
        if attempt >= self.retries or status not in RETRIED_STATUSES:
            return None
        told = parse_retry_after(retry_after)
        if status != 429 and method.upper() not in IDEMPOTENT_METHODS and told is None:
            return None
        if told is not None:
            # A little jitter on top, so that clients told "1" by the same apiserver do not return in lockstep.
            return min(told, self.max_retry_after) + random.uniform(0, min(self.base, 0.1))
        return self.wait(attempt)


NO_RETRY = Backoff(retries=0)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds ("1") or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
