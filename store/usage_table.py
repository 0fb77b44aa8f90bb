"""The `usage_daily` table: what each tenant's agents used and cost, one row per (tenant, day, agent).

Aggregates, not events: a call adds itself to its day's row when it ends (store/usage.py `add_call`, in the same
transaction that writes its report), so `GET /v1/usage` and the monthly limit checked at every session create
read at most one row per agent and day instead of summing the call history (which the tenant may erase, and
which the retention period deletes: usage and limits must survive both).

The primary key leads with (tenant, day): the month's totals behind the spend limits and a tenant's date range
are one index range scan of at most (days x agents) rows. Every figure is an integer (milliseconds, tokens,
characters, millionths of the platform's currency): sums stay exact.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, PrimaryKeyConstraint, Table, Text, text

from voxfleet.store.schema import metadata


def _counter(name: str) -> Column:
    return Column(name, BigInteger, nullable=False, server_default=text("0"))


usage_daily = Table(
    "usage_daily", metadata,
    Column("tenant", Text, nullable=False),
    Column("day", Date, nullable=False),  # the UTC date the calls ended
    Column("agent", Text, nullable=False),
    _counter("sessions"),
    _counter("call_ms"),  # the calls' durations as the gateway saw them: what the platform minute is billed on
    _counter("stt_ms"),
    _counter("llm_prompt_tokens"),
    _counter("llm_completion_tokens"),
    _counter("tts_characters"),
    _counter("cost_micros"),  # millionths of the platform's currency, priced by the gateway's PriceList
    PrimaryKeyConstraint("tenant", "day", "agent", name="pk_usage_daily"),
)
