"""The calls still live in the history: what the end-of-call report sweeper (gateway/call_reports.py) walks.

A partial index holds only the `live` rows, ordered as the sweeper reads them, so each sweep reads a bounded
page of live calls whatever the number of ended ones kept for history (a million rows cost it nothing). Rows
with region '' are idempotency placeholders of a create still placing its call (store/session_records.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from voxfleet.store.schema import sessions

live_index = Index("ix_sessions_live_started", sessions.c.started_at, sessions.c.tenant, sessions.c.session_id,
                   postgresql_where=sessions.c.status == "live")

LivePosition = tuple[datetime, str, str]  # (started_at, tenant, session_id) of the last row read


async def page(conn: AsyncConnection, *, started_before: datetime, after: LivePosition | None, limit: int
               ) -> list[Any]:
    """Up to `limit` live calls that started before `started_before`, oldest first, after `after`."""
    query = (select(sessions.c.tenant, sessions.c.session_id, sessions.c.started_at)
             .where(sessions.c.status == "live", sessions.c.started_at < started_before, sessions.c.region != "")
             .order_by(sessions.c.started_at, sessions.c.tenant, sessions.c.session_id).limit(limit))
    if after is not None:
        query = query.where(tuple_(sessions.c.started_at, sessions.c.tenant, sessions.c.session_id) > tuple_(*after))
    return list((await conn.execute(query)).all())
