"""The tenant's monthly limits (Tenant spec quotas.monthlyMinutes and quotas.monthlySpendCents): how much of each
the calendar month (UTC) has used, and the 429 a session create gets once one is reached.

Checked at every session create, before a slot is claimed (gateway/sessions_api.py), against the month's usage
rows (store/usage.py): the calls that ENDED this month, as recorded with their reports. A tenant without either
limit costs nothing here (no query at all); one with a limit costs one range scan of usage_daily's primary key,
(tenant, day) over this month: at most 31 rows per agent, about a millisecond with its round trip (p50 1-2.5 ms,
p99 2-10 ms on the shared 2-core test machine among 100,000 rows), so there is no cache: a cache would let every
gateway replica admit calls for its lifetime after the limit was reached elsewhere.

What a limit does not stop: calls already in progress are not cut, and they count only once they end. So a month
can overrun a limit by at most what the tenant's concurrent calls use (quotas.maxConcurrentSessions calls of at
most the agents' maxSessionSeconds each), which bounds what a leaked API key can run up past the limit.

A limit must hold or refuse: with a limit set and no database configured (or the database unreachable), session
creates of that tenant are refused (503); tenants without limits are unaffected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import SQLAlchemyError

from voxfleet.api.tenant import Quotas
from voxfleet.gateway.api_errors import ApiError
from voxfleet.gateway.metrics import GatewayMetrics
from voxfleet.gateway.pricing import MICROS_PER_CENT
from voxfleet.store import usage
from voxfleet.store.usage import UsageFigures

if TYPE_CHECKING:  # tenant_auth is imported through the runtime, which the API modules load first
    from voxfleet.gateway.tenant_auth import TenantContext
    from voxfleet.store.database import Database

log = structlog.get_logger(__name__)

MINUTES_FIELD = "quotas.monthlyMinutes"
SPEND_FIELD = "quotas.monthlySpendCents"
_MS_PER_MINUTE = 60_000
_UNAVAILABLE_RETRY_SECONDS = 5


@dataclass(frozen=True)
class Month:
    """A calendar month in UTC: from its first instant to the first instant of the next (when limits reset)."""

    starts_at: datetime
    resets_at: datetime

    @classmethod
    def containing(cls, moment: datetime) -> "Month":
        moment = moment.astimezone(UTC)
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
        following = datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=UTC)
        return cls(starts_at=start, resets_at=following)

    @property
    def first_day(self) -> date:
        return self.starts_at.date()

    @property
    def last_day(self) -> date:
        return (self.resets_at - timedelta(days=1)).date()


@dataclass(frozen=True)
class LimitUse:
    """One monthly limit against the month's use. `limit` None: the tenant has no such limit."""

    field: str  # the Tenant spec field, as the 429 and GET /v1/usage name it
    limit: int | None  # in the field's unit: minutes, or cents
    used_exact: int  # in the usage table's unit: ms, or micro-units of the currency
    exact_per_unit: int  # ms per minute, micro-units per cent

    @property
    def used(self) -> float:
        """In the limit's unit (minutes, cents), for people; used_exact is the exact figure."""
        return round(self.used_exact / self.exact_per_unit, 4)

    @property
    def remaining(self) -> float | None:
        if self.limit is None:
            return None
        return round(max(0, self.limit * self.exact_per_unit - self.used_exact) / self.exact_per_unit, 4)

    @property
    def reached(self) -> bool:
        return self.limit is not None and self.used_exact >= self.limit * self.exact_per_unit


def limit_uses(quotas: Quotas, month_use: UsageFigures) -> list[LimitUse]:
    return [LimitUse(MINUTES_FIELD, quotas.monthly_minutes, month_use.call_ms, _MS_PER_MINUTE),
            LimitUse(SPEND_FIELD, quotas.monthly_spend_cents, month_use.cost_micros, MICROS_PER_CENT)]


def has_limits(quotas: Quotas) -> bool:
    return quotas.monthly_minutes is not None or quotas.monthly_spend_cents is not None


async def month_use(database: "Database", *, tenant: str, month: Month) -> UsageFigures:
    async with database.engine.connect() as conn:
        return await usage.totals(conn, tenant=tenant, first_day=month.first_day, last_day=month.last_day)


async def check(database: "Database | None", *, tenant: "TenantContext", metrics: GatewayMetrics | None = None,
                now: datetime | None = None) -> None:
    """Raise the 429 when the tenant reached a monthly limit; return at once when it has none.

    `database` is the app's voxfleet.store.database.Database (request.app.state.database), or None."""
    quotas = tenant.spec.quotas
    if not has_limits(quotas):
        return
    if database is None:
        raise ApiError(503, "database_not_configured",
                       "This tenant has monthly limits, and this gateway has no database to count their use in;"
                       " new sessions are refused until the platform team configures one.")
    month = Month.containing(now or datetime.now(UTC))
    try:
        used = await month_use(database, tenant=tenant.name, month=month)
    except (SQLAlchemyError, OSError) as error:
        log.warning("monthly limits not checked: the database did not answer", tenant=tenant.name,
                    error_type=type(error).__name__)
        raise ApiError(503, "usage_unavailable", "This tenant's monthly use cannot be read right now, so its"
                                                 " limits cannot be checked; retry after Retry-After seconds.",
                       headers={"Retry-After": str(_UNAVAILABLE_RETRY_SECONDS)}) from None
    reached = [use for use in limit_uses(quotas, used) if use.reached]
    if not reached:
        return
    if metrics is not None:
        for use in reached:
            metrics.monthly_limit_refusals.labels(tenant=tenant.name, limit=use.field).inc()
    raise refusal(reached, month, now=now)


def refusal(reached: list[LimitUse], month: Month, *, now: datetime | None = None) -> ApiError:
    resets_at = month.resets_at.isoformat().replace("+00:00", "Z")
    wait = max(1, math.ceil((month.resets_at - (now or datetime.now(UTC))).total_seconds()))
    units = {MINUTES_FIELD: "minutes", SPEND_FIELD: "cents"}
    said = "; ".join(f"{use.field}: {use.used:g} of {use.limit} {units[use.field]} used" for use in reached)
    return ApiError(
        429, "monthly_limit_reached",
        f"This tenant reached its monthly limit ({said}). New sessions are refused until {resets_at}, when the"
        " month's use resets; ask your platform team to raise the limit.",
        details=[{"field": use.field, "reason": "MonthlyLimitReached",
                  "message": f"{use.used:g} of {use.limit} {units[use.field]} used this month",
                  "limit": use.limit, "used": use.used, "resetsAt": resets_at} for use in reached],
        # The first limit reached as top-level members of the problem, so a client needs no digging in details.
        extensions={"limit": reached[0].field, "used": reached[0].used, "limitValue": reached[0].limit,
                    "resetsAt": resets_at},
        headers={"Retry-After": str(wait)})
