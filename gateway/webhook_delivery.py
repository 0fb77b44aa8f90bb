"""The webhook dispatcher: every gateway replica runs one; together they deliver the outbox at least once.

Each poll claims due deliveries with `SELECT ... FOR UPDATE SKIP LOCKED` and stamps them with a lease (this
replica's id, until now + lease_seconds): two replicas never claim the same row at once, and the rows of a
replica that dies mid-delivery are claimed again once their lease runs out. Each claimed delivery is POSTed
outside any transaction (the exact stored body, signed now), then its attempt is recorded and the delivery
marked delivered (any 2xx), retried later (anything else: another status, a timeout, a refused or failed
connection; exponential backoff with jitter) or failed (attempts used up).

At least once, not exactly once: a replica killed after the receiver answered 2xx but before the answer was
recorded leaves the row to be sent again; the event id (payload `id`, header `Voxfleet-Event-Id`) lets the
receiver drop the repeat.

Every connection goes through the outbound policy (voxfleet.api.outbound: the host resolved and every address
checked at connect time, then pinned, so a DNS answer changed since registration cannot point it inside), a
redirect is never followed (a 3xx is a failed attempt), an attempt lasts at most timeout_seconds in all, and at
most max_response_bytes of the answer are read. Nothing of the answer is stored but its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import and_, delete, select, text, update

from voxfleet.api.outbound import OutboundPolicy, OutboundURLRefused
from voxfleet.api.webhooks import EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER
from voxfleet.gateway import webhook_secrets
from voxfleet.gateway.webhook_settings import TenantWebhookSettings
from voxfleet.store.webhook_tables import webhook_attempts, webhook_deliveries

log = structlog.get_logger(__name__)

USER_AGENT = "voxfleet-webhooks/1"
MAX_ERROR_LENGTH = 300

# The claim: due pending rows whose lease (if any) ran out, oldest due first, skipping rows another replica holds
# locked right now; each stamped with our lease in the same statement.
_CLAIM = text("""
UPDATE webhook_deliveries AS d
   SET lease_owner = :owner, lease_until = now() + make_interval(secs => :lease_seconds)
  FROM webhook_endpoints AS e
 WHERE e.id = d.endpoint_id
   AND d.id IN (SELECT id FROM webhook_deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY next_attempt_at
                 LIMIT :batch
                   FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.tenant, d.endpoint_id, d.event_id, d.event_type, d.body, d.attempts,
          e.url, e.secret_nonce, e.secret_key_id
""")


@dataclass(frozen=True)
class Claimed:
    id: int
    tenant: str
    endpoint_id: str
    event_id: str
    event_type: str
    body: str
    attempts: int  # made before this one
    url: str
    secret_nonce: str
    secret_key_id: str


@dataclass(frozen=True)
class AttemptResult:
    outcome: str  # delivered, http_error, timeout, unreachable, refused, no_signing_key
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "voxfleet_gateway_tenant_webhook_attempts",
            "Tenant webhook delivery attempts by outcome (delivered, http_error, timeout, unreachable, refused,"
            " no_signing_key).", ["tenant", "outcome"], registry=registry)
        self.deliveries = Counter(
            "voxfleet_gateway_tenant_webhook_deliveries",
            "Tenant webhook deliveries finished, by outcome (delivered, failed: every attempt used up).",
            ["tenant", "outcome"], registry=registry)


class WebhookDispatcher:
    def __init__(self, database: Any, settings: TenantWebhookSettings, policy: OutboundPolicy,
                 signing_keys: list[bytes], registry: CollectorRegistry, *, owner: str | None = None) -> None:
        self.database = database
        self.settings = settings
        self.policy = policy
        self.signing_keys = signing_keys
        self.metrics = WebhookMetrics(registry)
        self.owner = owner or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task | None = None
        self._in_flight = asyncio.Semaphore(settings.concurrency)
        self._random = random.Random()
        self._last_prune = 0.0
        # No redirects: a receiver's 3xx is a failed attempt (following it would POST the event somewhere the
        # tenant never registered). The pinned transport still checks every connection.
        self._client = policy.httpx_client(follow_redirects=False, headers={"User-Agent": USER_AGENT},
                                           timeout=httpx.Timeout(settings.timeout_seconds),
                                           limits=httpx.Limits(max_connections=settings.concurrency * 2,
                                                               max_keepalive_connections=settings.concurrency))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tenant webhook dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                handled = await self.run_once()
                await self._prune_if_due()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a database outage: keep polling, it comes back
                failures += 1
                log.warning("webhook dispatcher poll failed", error_type=type(error).__name__, failures=failures)
                handled = 0
            if handled < self.settings.batch_size:  # a full batch: more may be due right now
                # Through an outage, back off to one poll (and one log line) per 30 s at most.
                await asyncio.sleep(min(self.settings.poll_seconds * 2 ** min(failures, 10), 30.0))

    async def run_once(self) -> int:
        """Claim what is due and deliver it; returns how many were claimed."""
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self._deliver_and_record(item) for item in claimed))
        return len(claimed)

    async def claim(self) -> list[Claimed]:
        async with self.database.transaction() as conn:
            rows = await conn.execute(_CLAIM, {"owner": self.owner, "lease_seconds": self.settings.lease_seconds,
                                               "batch": self.settings.batch_size})
            return [Claimed(**row._mapping) for row in rows]

    async def _deliver_and_record(self, item: Claimed) -> None:
        async with self._in_flight:
            result = await self.attempt(item)
        try:
            await self.record(item, result)
        except Exception as error:  # noqa: BLE001 - the lease runs out and it is sent again: at least once
            log.warning("webhook attempt not recorded", tenant=item.tenant, delivery=item.id,
                        error_type=type(error).__name__)

    async def attempt(self, item: Claimed) -> AttemptResult:
        started_at = datetime.now(timezone.utc)
        start = time.monotonic()

        def result(outcome: str, status: int | None = None, error: str | None = None) -> AttemptResult:
            return AttemptResult(outcome, started_at, int((time.monotonic() - start) * 1000), status,
                                 None if error is None else error[:MAX_ERROR_LENGTH])

        secret = webhook_secrets.secret_for(self.signing_keys, tenant=item.tenant, endpoint_id=item.endpoint_id,
                                            nonce=item.secret_nonce, derived_by=item.secret_key_id)
        if secret is None:
            return result("no_signing_key", error="the platform key that derived this endpoint's secret was retired;"
                                                  " delete and re-create the endpoint")
        body = item.body.encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: item.event_id,
                   EVENT_TYPE_HEADER: item.event_type,
                   SIGNATURE_HEADER: webhook_secrets.signature(secret, int(time.time()), body)}
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                async with self._client.stream("POST", item.url, content=body, headers=headers) as response:
                    await self._read_capped(response)
                    status = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return result("timeout", error=f"no complete answer within {self.settings.timeout_seconds:g} s")
        except OutboundURLRefused as refused:
            return result("refused", error=f"the outbound policy refused the connection: {refused.reason}")
        except httpx.HTTPError as error:
            return result("unreachable", error=f"connection failed ({type(error).__name__})")
        if 200 <= status < 300:
            return result("delivered", status)
        if 300 <= status < 400:
            return result("http_error", status, f"HTTP {status}: redirects are not followed")
        return result("http_error", status, f"HTTP {status}")

    async def _read_capped(self, response: httpx.Response) -> None:
        """Read at most max_response_bytes of the answer (a receiver may send gigabytes), then stop."""
        remaining = self.settings.max_response_bytes
        async for chunk in response.aiter_raw():
            remaining -= len(chunk)
            if remaining <= 0:
                break

    async def record(self, item: Claimed, result: AttemptResult) -> None:
        attempt = item.attempts + 1
        now = datetime.now(timezone.utc)
        if result.delivered:
            changes: dict[str, Any] = {"status": "delivered", "delivered_at": now}
            final = "delivered"
        elif attempt >= self.settings.max_attempts or result.outcome == "no_signing_key":
            changes = {"status": "failed"}
            final = "failed"
        else:
            gap = self.settings.retry_gap(attempt, self._random.random())
            changes = {"next_attempt_at": now + timedelta(seconds=gap)}
            final = None
        async with self.database.transaction() as conn:
            await conn.execute(webhook_attempts.insert().values(
                delivery_id=item.id, attempt=attempt, started_at=result.started_at, duration_ms=result.duration_ms,
                status_code=result.status_code, error=result.error, outcome=result.outcome))
            # Only while the row is still ours: if our lease ran out and another replica claimed it meanwhile,
            # its own attempt decides the schedule (a 2xx still marks it delivered: it was).
            mine = and_(webhook_deliveries.c.id == item.id, webhook_deliveries.c.status == "pending",
                        webhook_deliveries.c.lease_owner == self.owner)
            updated = await conn.execute(update(webhook_deliveries).where(mine).values(
                attempts=attempt, lease_owner=None, lease_until=None, **changes))
            if updated.rowcount == 0 and result.delivered:
                await conn.execute(update(webhook_deliveries).where(and_(
                    webhook_deliveries.c.id == item.id, webhook_deliveries.c.status == "pending")).values(
                    attempts=webhook_deliveries.c.attempts + 1, **changes))
        self.metrics.attempts.labels(tenant=item.tenant, outcome=result.outcome).inc()
        if final is not None:
            self.metrics.deliveries.labels(tenant=item.tenant, outcome=final).inc()
        log.info("webhook attempt", tenant=item.tenant, endpoint=item.endpoint_id, event_type=item.event_type,
                 event_id=item.event_id, attempt=attempt, outcome=result.outcome, status=result.status_code,
                 duration_ms=result.duration_ms, final=final)

    async def _prune_if_due(self) -> None:
        """Delete finished deliveries older than the log keeps them, a bounded batch at a time (every replica may
        do it; the deletes do not conflict)."""
        if time.monotonic() - self._last_prune < 600:
            return
        self._last_prune = time.monotonic()
        cutoff = datetime.now(timezone.utc) - timedelta(days=self.settings.delivery_log_days)
        old = select(webhook_deliveries.c.id).where(and_(
            webhook_deliveries.c.created_at < cutoff, webhook_deliveries.c.status != "pending")).limit(5000)
        async with self.database.transaction() as conn:
            await conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.id.in_(old)))
