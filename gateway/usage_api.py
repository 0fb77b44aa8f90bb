"""`GET /v1/usage`: what the tenant's agents used and cost, by agent and day, and where the month stands against
the tenant's monthly limits.

Read from usage_daily (store/usage.py), which each call's end adds itself to: the figures survive the tenant
erasing calls and the retention period deleting them. Days are UTC dates of the calls' ends; `from` and `to` are
inclusive, at most MAX_RANGE_DAYS apart, default the current month so far. Costs are integers in micro-units of the
price list's currency, each with an exact decimal string beside it.

Worst-case cost: two index range scans of (tenant, day) - the range's rows (at most MAX_ROWS; a range holding
more is refused, naming what to narrow) and the current month's sums.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError

from voxfleet.api.model_base import DNS_LABEL, ApiModel
from voxfleet.gateway import spend_limits
from voxfleet.gateway.api_errors import ApiError, documented
from voxfleet.gateway.pricing import PriceList, decimal_amount
from voxfleet.gateway.runtime import runtime_of
from voxfleet.gateway.spend_limits import LimitUse, Month
from voxfleet.gateway.store_access import require_database
from voxfleet.gateway.tenant_auth import TenantContext, require_tenant
from voxfleet.store import usage
from voxfleet.store.database import Database
from voxfleet.store.usage import UsageFigures

MAX_RANGE_DAYS = 366
MAX_ROWS = 5000  # agents x days in one answer; 366 days of 13 agents fit
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MS_PER_MINUTE = 60_000


class UsageTotals(ApiModel):
    """Sums over calls that ended in the period: integers, plus minutes and a decimal cost for people."""

    sessions: int = Field(description="Calls that ended.")
    call_ms: int = Field(description="Their call time on the platform (ms).")
    minutes: float = Field(description="call_ms in minutes (3 decimals).")
    stt_ms: int = Field(description="Caller audio sent to speech-to-text (ms).")
    stt_minutes: float = Field(description="stt_ms in minutes (3 decimals).")
    llm_prompt_tokens: int
    llm_completion_tokens: int
    tts_characters: int
    cost_micros: int = Field(description="What they cost, in micro-units (millionths) of `currency`.")
    cost: str = Field(description="cost_micros as an exact decimal string in `currency`, e.g. \"1.250000\".")

    @classmethod
    def of(cls, figures: UsageFigures) -> "UsageTotals":
        return cls(sessions=figures.sessions, call_ms=figures.call_ms,
                   minutes=round(figures.call_ms / _MS_PER_MINUTE, 3), stt_ms=figures.stt_ms,
                   stt_minutes=round(figures.stt_ms / _MS_PER_MINUTE, 3),
                   llm_prompt_tokens=figures.llm_prompt_tokens, llm_completion_tokens=figures.llm_completion_tokens,
                   tts_characters=figures.tts_characters, cost_micros=figures.cost_micros,
                   cost=decimal_amount(figures.cost_micros))


class AgentDayUsage(UsageTotals):
    day: date = Field(description="The UTC date the calls ended.")
    agent: str


class MonthlyLimit(ApiModel):
    """One monthly limit of the Tenant spec and the month's use of it."""

    field: str = Field(description="The Tenant spec field: quotas.monthlyMinutes or quotas.monthlySpendCents.")
    limit: int | None = Field(description="In minutes or cents; null: no limit.")
    used: float = Field(description="This month so far, in the limit's unit (minutes, or cents).")
    remaining: float | None = Field(description="What is left before new sessions are refused; null: no limit.")
    reached: bool = Field(description="New sessions are refused (429) until `resetsAt`.")

    @classmethod
    def of(cls, use: LimitUse) -> "MonthlyLimit":
        return cls(field=use.field, limit=use.limit, used=use.used, remaining=use.remaining, reached=use.reached)


class MonthUsage(ApiModel):
    """The current calendar month (UTC), which the monthly limits count."""

    starts_at: datetime
    resets_at: datetime = Field(description="When the month's use resets: the first instant of the next month.")
    totals: UsageTotals
    limits: list[MonthlyLimit]


class UsageReport(ApiModel):
    first_day: date = Field(alias="from", description="First UTC day of the period (inclusive).")
    last_day: date = Field(alias="to", description="Last UTC day of the period (inclusive).")
    currency: str = Field(description="ISO 4217 code of every cost.")
    items: list[AgentDayUsage] = Field(description="One per agent and day with calls, by day then agent.")
    totals: UsageTotals = Field(description="Over the period and every agent listed.")
    month: MonthUsage


router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageReport, response_model_by_alias=True,
            summary="Usage and cost by agent and day, and the month's limits",
            responses=documented(401, 403, 422, 429, 503))
async def get_usage(request: Request, tenant: TenantContext = Depends(require_tenant),
                    database: Database = Depends(require_database),
                    first: str | None = Query(None, alias="from", max_length=40,
                                             description="First UTC date, YYYY-MM-DD (default: the month's first)."),
                    last: str | None = Query(None, alias="to", max_length=40,
                                            description="Last UTC date, YYYY-MM-DD (default: today)."),
                    agent: Annotated[str | None, Query(min_length=1, max_length=63, pattern=DNS_LABEL,
                                                       description="Only this agent's usage.")] = None,
                    ) -> UsageReport:
    now = datetime.now(UTC)
    month = Month.containing(now)
    last_day = _date("to", last) if last else now.date()
    first_day = _date("from", first) if first else last_day.replace(day=1)
    if first_day > last_day:
        raise _invalid("from", "must not be after `to`", "RangeReversed")
    if (last_day - first_day).days + 1 > MAX_RANGE_DAYS:
        raise _invalid("to", f"at most {MAX_RANGE_DAYS} days after `from` (inclusive)", "RangeTooLong")
    prices: PriceList = runtime_of(request).settings.prices
    try:
        async with database.engine.connect() as conn:
            rows = await usage.daily(conn, tenant=tenant.name, first_day=first_day, last_day=last_day, agent=agent,
                                     limit=MAX_ROWS + 1)
            month_figures = await usage.totals(conn, tenant=tenant.name, first_day=month.first_day,
                                               last_day=month.last_day)
    except (SQLAlchemyError, OSError):
        raise ApiError(503, "usage_unavailable", "The usage store does not answer right now; retry shortly.",
                       headers={"Retry-After": str(runtime_of(request).settings.retry_after_seconds)}) from None
    if len(rows) > MAX_ROWS:
        raise _invalid("from", f"the period holds more than {MAX_ROWS} agent-days: shorten it or filter by agent",
                       "TooManyRows")
    totals = UsageFigures(**{name: sum(getattr(row.figures, name) for row in rows) for name in usage.FIGURES})
    return UsageReport(
        first_day=first_day, last_day=last_day, currency=prices.currency,
        items=[AgentDayUsage(day=row.day, agent=row.agent, **UsageTotals.of(row.figures).model_dump())
               for row in rows],
        totals=UsageTotals.of(totals),
        month=MonthUsage(starts_at=month.starts_at, resets_at=month.resets_at, totals=UsageTotals.of(month_figures),
                         limits=[MonthlyLimit.of(use)
                                 for use in spend_limits.limit_uses(tenant.spec.quotas, month_figures)]))


def _date(name: str, value: str) -> date:
    if not _DATE.match(value):
        raise _invalid(name, "a UTC date as YYYY-MM-DD", "InvalidDate")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid(name, "not a calendar date (YYYY-MM-DD)", "InvalidDate") from None


def _invalid(name: str, problem: str, reason: str) -> ApiError:
    return ApiError(422, "invalid_request", f"The request is not valid: `{name}` {problem}.",
                    details=[{"field": name, "message": problem, "reason": reason}])
