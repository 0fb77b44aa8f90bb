"""Per-tenant request rate limits: a token bucket per tenant, in each replica, and the headers that tell a
client where it stands (IETF draft-ietf-httpapi-ratelimit-headers, the RateLimit-Limit/-Remaining/-Reset form).

Each replica enforces the configured rate on its own; behind a load balancer with R replicas a tenant may get
up to R times the rate, so platform teams set the per-replica figure accordingly (and the headers describe the
replica that answered).

The headers on every answer to an authenticated request, refusals included:
  RateLimit-Limit      the bucket's size: requests the tenant may send at once (the burst)
  RateLimit-Remaining  requests left in the bucket now
  RateLimit-Reset      seconds until the bucket is full again (0 when it is full)
  RateLimit-Policy     `<burst>;w=<seconds to refill an empty bucket>`
and on a 429 Retry-After: seconds until the next request may go ahead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATE_KEY = "rate_limit"  # request.state.rate_limit: the RateLimitStatus of the request's tenant


@dataclass(frozen=True)
class RateLimitStatus:
    limit: int
    remaining: int
    reset_seconds: int
    window_seconds: int

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_seconds),
                "RateLimit-Policy": f"{self.limit};w={self.window_seconds}"}


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

    def status(self, tenant: str, now: float | None = None) -> RateLimitStatus:
        """Where the tenant stands now (after this request's token was taken, when it was)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(tenant, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        return RateLimitStatus(limit=int(self.burst), remaining=max(0, int(tokens)),
                               reset_seconds=max(0, math.ceil((self.burst - tokens) / self.rate)),
                               window_seconds=max(1, math.ceil(self.burst / self.rate)))

    @staticmethod
    def retry_after_header(wait_seconds: float) -> str:
        return str(max(1, math.ceil(wait_seconds)))


class RateLimitHeaders:
    """ASGI middleware: the RateLimit-* headers on every answer whose request was authenticated (the tenant
    dependency leaves its RateLimitStatus in the request's state), whatever answered it: a route's model, a
    Response it built itself, or the problem handler of an error. Requests without a tenant get none."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = (scope.get("state") or {}).get(STATE_KEY)
                if isinstance(status, RateLimitStatus):
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    extra = [(name.lower().encode(), value.encode()) for name, value in status.headers().items()
                             if name.lower().encode() not in present]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
