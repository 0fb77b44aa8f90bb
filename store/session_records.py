"""The SQL of the call history (the `sessions` table of store/schema.py): a call's row at its start, the
Idempotency-Key reservation, one call by id, a page of calls, erasure and the retention sweep's batches.

Pages are keyset pages, newest first, on (started_at, session_id): the row comparison
`(started_at, session_id) < (cursor)` together with `tenant = ...` (and `agent = ...`) is a range of the indexes
ix_sessions_tenant_started / ix_sessions_tenant_agent_started, so a page deep in a tenant's history costs what
the first page costs: an index range scan of `limit + 1` entries, never an OFFSET.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from voxfleet.store.schema import sessions

# What a page shows of each call: no transcript, and of the report only its turns (for the item's TTFA summary).
_PAGE_COLUMNS = (sessions.c.session_id, sessions.c.agent, sessions.c.region, sessions.c.room, sessions.c.channel,
                 sessions.c.status, sessions.c.started_at, sessions.c.ended_at, sessions.c.end_reason,
                 sessions.c.duration_ms, sessions.c.cost_micros, sessions.c.report["turns"].label("turns"))


@dataclass(frozen=True)
class HistoryFilter:
    """What a history page is restricted to (every field optional but the tenant)."""

    tenant: str
    agent: str | None = None
    started_from: datetime | None = None  # inclusive
    started_to: datetime | None = None  # exclusive
    end_reason: str | None = None
    status: str | None = None


@dataclass(frozen=True)
class PagePosition:
    """The last item of the previous page: the next page starts strictly after it."""

    started_at: datetime
    session_id: str


async def insert_live(conn: AsyncConnection, *, tenant: str, session_id: str, agent: str, region: str, room: str,
                      worker: str | None, channel: str, started_at: datetime) -> None:
    """The row of a call just placed (no Idempotency-Key)."""
    await conn.execute(sessions.insert().values(
        tenant=tenant, session_id=session_id, agent=agent, region=region, room=room, worker=worker,
        channel=channel, status="live", started_at=started_at))


async def reserve_idempotency_key(conn: AsyncConnection, *, tenant: str, placeholder_id: str, agent: str,
                                  channel: str, started_at: datetime, idempotency_key: str,
                                  request_hash: str) -> bool:
    """Claim the key for this request inside the caller's open transaction: True when this request holds it (it
    places the call, then `settle`s the row), False when another request holds it already.

    Concurrency comes from the unique index on (tenant, idempotency_key): a second INSERT of the same key waits
    for the first transaction; if that commits, the second does nothing (False) and reads the committed row; if it
    rolls back (the call could not be placed), the second's INSERT goes through and that request places the call.
    No request ever sees another's uncommitted placeholder, and no two requests of one key both place a call.
    """
    inserted = await conn.execute(insert(sessions).values(
        tenant=tenant, session_id=placeholder_id, agent=agent, region="", room="", worker=None, channel=channel,
        status="live", started_at=started_at, idempotency_key=idempotency_key, request_hash=request_hash,
    ).on_conflict_do_nothing().returning(sessions.c.session_id))
    return inserted.first() is not None


async def settle(conn: AsyncConnection, *, tenant: str, placeholder_id: str, session_id: str, region: str,
                 room: str, worker: str | None, started_at: datetime) -> None:
    """The reserved row becomes the placed call's row (still in the reserving transaction)."""
    await conn.execute(update(sessions).where(sessions.c.tenant == tenant, sessions.c.session_id == placeholder_id)
                       .values(session_id=session_id, region=region, room=room, worker=worker, started_at=started_at))


async def by_idempotency_key(conn: AsyncConnection, *, tenant: str, idempotency_key: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(sessions).where(
        sessions.c.tenant == tenant, sessions.c.idempotency_key == idempotency_key))).mappings().first()
    return dict(row) if row else None


async def one(conn: AsyncConnection, *, tenant: str, session_id: str) -> dict[str, Any] | None:
    """The whole row (report and transcript included) of one of the tenant's calls."""
    row = (await conn.execute(select(sessions).where(
        sessions.c.tenant == tenant, sessions.c.session_id == session_id))).mappings().first()
    return dict(row) if row else None


def page_query(where: HistoryFilter, *, after: PagePosition | None, limit: int) -> Select:
    """The statement of one page (limit + 1 rows: the extra one says whether there is a next page)."""
    query = select(*_PAGE_COLUMNS).where(sessions.c.tenant == where.tenant)
    if where.agent is not None:
        query = query.where(sessions.c.agent == where.agent)
    if where.started_from is not None:
        query = query.where(sessions.c.started_at >= where.started_from)
    if where.started_to is not None:
        query = query.where(sessions.c.started_at < where.started_to)
    if where.end_reason is not None:
        query = query.where(sessions.c.end_reason == where.end_reason)
    if where.status is not None:
        query = query.where(sessions.c.status == where.status)
    if after is not None:
        query = query.where(tuple_(sessions.c.started_at, sessions.c.session_id)
                            < tuple_(after.started_at, after.session_id))
    # A reservation whose call is still being placed is never committed, so never read; no need to filter it.
    return query.order_by(sessions.c.started_at.desc(), sessions.c.session_id.desc()).limit(limit + 1)


# A page walks one index range; a filter the index does not hold (endReason, status) may make it walk far for a
# rare value. Past this the query is cancelled (SQLSTATE 57014) and the tenant told to narrow it.
PAGE_STATEMENT_TIMEOUT_MS = 5000
QUERY_CANCELED = "57014"


async def page(conn: AsyncConnection, where: HistoryFilter, *, after: PagePosition | None,
               limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` calls newest first, and whether more follow (inside the caller's transaction)."""
    await conn.execute(text(f"SET LOCAL statement_timeout = {PAGE_STATEMENT_TIMEOUT_MS}"))
    rows = [dict(r) for r in (await conn.execute(page_query(where, after=after, limit=limit))).mappings()]
    return rows[:limit], len(rows) > limit


async def erase(conn: AsyncConnection, *, tenant: str, session_id: str) -> dict[str, Any] | None:
    """Delete the call's row, report and transcript with it; what it was (status, agent, started_at), or None
    when there was none."""
    result = await conn.execute(delete(sessions).where(sessions.c.tenant == tenant,
                                                       sessions.c.session_id == session_id)
                                .returning(sessions.c.status, sessions.c.agent, sessions.c.started_at))
    row = result.mappings().first()
    return dict(row) if row else None


# The tenants that have records, one index probe each (a loose index scan: PostgreSQL 15 has no skip scan, and a
# plain DISTINCT would read every row of the table).
_TENANTS_WITH_RECORDS = text("""
WITH RECURSIVE found(tenant) AS (
    (SELECT tenant FROM sessions ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT s.tenant FROM sessions s WHERE s.tenant > found.tenant ORDER BY s.tenant LIMIT 1)
    FROM found WHERE found.tenant IS NOT NULL
)
SELECT tenant FROM found WHERE tenant IS NOT NULL
""")


async def tenants_with_records(conn: AsyncConnection) -> Sequence[str]:
    return [row[0] for row in await conn.execute(_TENANTS_WITH_RECORDS)]


async def delete_older_than(conn: AsyncConnection, *, tenant: str, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` of the tenant's calls that started before cutoff (the oldest first); how many went."""
    doomed = select(sessions.c.tenant, sessions.c.session_id).where(
        sessions.c.tenant == tenant, sessions.c.started_at < cutoff
    ).order_by(sessions.c.started_at.asc()).limit(batch)
    result = await conn.execute(delete(sessions).where(
        tuple_(sessions.c.tenant, sessions.c.session_id).in_(doomed)))
    return result.rowcount
