"""The durable store's shared `metadata` and the `sessions` table (the call history).

SQLAlchemy Core, no ORM: the gateway writes rows in a few hand-written statements (a call's start, its report, its
erasure) and reads pages of them; an object mapper would add a session cache and lazy loads for nothing. Every
other table lives in its owner's module on this same `metadata` (store/webhook_tables.py, store/usage_table.py),
so `metadata.create_all` and Alembic's comparisons see the whole database.

The Alembic migrations in store/migrations/versions/ are what create the tables in a real database; this module
is what the code queries against. tests/store/test_migrations.py checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, DateTime, Index, Integer, MetaData, PrimaryKeyConstraint, Table, Text,
                        text)
from sqlalchemy.dialects.postgresql import JSONB

# Names for constraints and indexes that Alembic can find again in a later migration (drop, rename).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

SESSION_STATUSES = ("live", "ended")

# One row per session a tenant placed, from its create to its end and report, until the tenant's retention period
# (Tenant spec.history.retentionDays) or a DELETE erases it.
sessions = Table(
    "sessions", metadata,
    Column("tenant", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("region", Text, nullable=False),
    Column("room", Text, nullable=False),
    Column("worker", Text, nullable=True),  # the worker pod's name
    Column("channel", Text, nullable=False, server_default=text("'web'")),
    Column("status", Text, nullable=False),  # 'live' | 'ended'
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", Text, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("report", JSONB, nullable=True),  # the CallReport (api/call_report.py) without its transcript
    Column("transcript", JSONB, nullable=True),  # list of lines; only when the agent records transcripts
    Column("cost_micros", BigInteger, nullable=True),
    Column("idempotency_key", Text, nullable=True),  # the create's Idempotency-Key header
    Column("request_hash", Text, nullable=True),  # ... and the hash of its body (same key, other body: 422)
    PrimaryKeyConstraint("tenant", "session_id", name="pk_sessions"),
)

# History pages, newest first, with (started_at, session_id) as the keyset cursor; per agent too.
Index("ix_sessions_tenant_started", sessions.c.tenant, sessions.c.started_at.desc(), sessions.c.session_id.desc())
Index("ix_sessions_tenant_agent_started", sessions.c.tenant, sessions.c.agent, sessions.c.started_at.desc(),
      sessions.c.session_id.desc())
# A retried create with the same Idempotency-Key finds the first one's row instead of placing a second call.
Index("uq_sessions_tenant_idempotency_key", sessions.c.tenant, sessions.c.idempotency_key, unique=True,
      postgresql_where=sessions.c.idempotency_key.isnot(None))
