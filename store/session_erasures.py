"""Erased calls, remembered just long enough that nothing brings them back.

`DELETE /v1/sessions/{id}` deletes the call's `sessions` row (its report and transcript go with it) and writes a
tombstone here, in the same transaction: the end-of-call report of a call that was live when it was erased (its
worker ends it and reports a moment later) or a report that was already on its way must not write the record
again. The tombstone holds no call content, not even the session id: only a SHA-256 digest of (tenant, session
id), which is all a later report needs to be recognised. It is kept until the signed session id expires (the
session's maxSessionSeconds plus a grace: no worker can report on the session after that) plus a margin, then the
retention sweeper (gateway/history_retention.py) deletes it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import (Column, DateTime, Index, LargeBinary, PrimaryKeyConstraint, Table, Text, delete, select,
                        tuple_)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from voxfleet.store.schema import metadata

session_erasures = Table(
    "session_erasures", metadata,
    Column("tenant", Text, nullable=False),
    Column("session_digest", LargeBinary, nullable=False),  # sha256(tenant NUL session_id): no content, no id
    Column("forget_after", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("tenant", "session_digest", name="pk_session_erasures"),
)
# The sweeper finds expired tombstones without reading the others.
Index("ix_session_erasures_forget_after", session_erasures.c.forget_after)


def digest(tenant: str, session_id: str) -> bytes:
    return hashlib.sha256(tenant.encode() + b"\x00" + session_id.encode()).digest()


async def remember(conn: AsyncConnection, *, tenant: str, session_id: str, forget_after: datetime) -> None:
    """Note that this session was erased (idempotent: a second erase keeps the later forget_after)."""
    statement = insert(session_erasures).values(tenant=tenant, session_digest=digest(tenant, session_id),
                                                forget_after=forget_after)
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[session_erasures.c.tenant, session_erasures.c.session_digest],
        set_={"forget_after": statement.excluded.forget_after},
        where=session_erasures.c.forget_after < statement.excluded.forget_after))


async def was_erased(conn: AsyncConnection, *, tenant: str, session_id: str) -> bool:
    """True when the tenant erased this session: its late report must be dropped, not written."""
    found = await conn.scalar(select(session_erasures.c.forget_after).where(
        session_erasures.c.tenant == tenant, session_erasures.c.session_digest == digest(tenant, session_id)))
    return found is not None


async def forget_expired(conn: AsyncConnection, *, now: datetime, batch: int) -> int:
    """Delete up to `batch` tombstones past their forget_after; how many went."""
    doomed = select(session_erasures.c.tenant, session_erasures.c.session_digest).where(
        session_erasures.c.forget_after < now).limit(batch)
    result = await conn.execute(delete(session_erasures).where(
        tuple_(session_erasures.c.tenant, session_erasures.c.session_digest).in_(doomed)))
    return result.rowcount
