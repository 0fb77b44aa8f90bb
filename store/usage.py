"""Writing and reading a tenant's usage (the `usage_daily` table of store/usage_table.py).

`add_call` runs inside the transaction that records a call's end (gateway/call_reports.py), so a call is in
the history and in the usage, or in neither. It is an upsert that increments: concurrent calls ending on the same
day for the same agent serialise on that one row's lock, never lose an increment, and never need a read first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from voxfleet.api.call_report import CallUsage
from voxfleet.store.usage_table import usage_daily

FIGURES = ("sessions", "call_ms", "stt_ms", "llm_prompt_tokens", "llm_completion_tokens", "tts_characters",
           "cost_micros")


@dataclass(frozen=True)
class UsageFigures:
    """Sums over some days and agents (all integers)."""

    sessions: int = 0
    call_ms: int = 0
    stt_ms: int = 0
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_characters: int = 0
    cost_micros: int = 0


@dataclass(frozen=True)
class DailyUsage:
    day: date
    agent: str
    figures: UsageFigures


async def add_call(conn: AsyncConnection, *, tenant: str, agent: str, day: date, call_ms: int, usage: CallUsage,
                   cost_micros: int) -> None:
    """Count one ended call into its day's row (created at its first call)."""
    values = {"sessions": 1, "call_ms": call_ms, "stt_ms": usage.stt_ms,
              "llm_prompt_tokens": usage.llm_prompt_tokens, "llm_completion_tokens": usage.llm_completion_tokens,
              "tts_characters": usage.tts_characters, "cost_micros": cost_micros}
    negative = [name for name, value in values.items() if value < 0]
    if negative:  # CallUsage's bounds refuse these at the gateway's door; a bug must not lower a tenant's use
        raise ValueError(f"usage figures must not be negative: {', '.join(negative)}")
    statement = insert(usage_daily).values(tenant=tenant, day=day, agent=agent, **values)
    statement = statement.on_conflict_do_update(
        index_elements=[usage_daily.c.tenant, usage_daily.c.day, usage_daily.c.agent],
        set_={name: usage_daily.c[name] + statement.excluded[name] for name in values})
    await conn.execute(statement)


async def totals(conn: AsyncConnection, *, tenant: str, first_day: date, last_day: date) -> UsageFigures:
    """The tenant's sums over [first_day, last_day] and all its agents: one range scan of the primary key."""
    row = (await conn.execute(
        select(*(func.coalesce(func.sum(usage_daily.c[name]), 0).label(name) for name in FIGURES))
        .where(usage_daily.c.tenant == tenant, usage_daily.c.day >= first_day, usage_daily.c.day <= last_day)
    )).one()
    return UsageFigures(**{name: int(row._mapping[name]) for name in FIGURES})


async def daily(conn: AsyncConnection, *, tenant: str, first_day: date, last_day: date, agent: str | None = None,
                limit: int) -> list[DailyUsage]:
    """The tenant's rows over [first_day, last_day] (one agent's, or all), by day then agent, at most `limit`."""
    query = (select(usage_daily.c.day, usage_daily.c.agent, *(usage_daily.c[name] for name in FIGURES))
             .where(usage_daily.c.tenant == tenant, usage_daily.c.day >= first_day, usage_daily.c.day <= last_day)
             .order_by(usage_daily.c.day, usage_daily.c.agent)
             .limit(limit))
    if agent is not None:
        query = query.where(usage_daily.c.agent == agent)
    rows = (await conn.execute(query)).all()
    return [DailyUsage(day=row.day, agent=row.agent,
                       figures=UsageFigures(**{name: int(row._mapping[name]) for name in FIGURES}))
            for row in rows]
