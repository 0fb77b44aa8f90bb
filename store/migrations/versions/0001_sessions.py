"""The call history: one row per session (store/schema.py `sessions`).

Revision ID: 0001_sessions
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_sessions"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("channel", sa.Text(), nullable=False, server_default=sa.text("'web'")),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("report", JSONB(), nullable=True),
        sa.Column("transcript", JSONB(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column("request_hash", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "session_id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_tenant_started", "sessions",
                    ["tenant", sa.text("started_at DESC"), sa.text("session_id DESC")])
    op.create_index("ix_sessions_tenant_agent_started", "sessions",
                    ["tenant", "agent", sa.text("started_at DESC"), sa.text("session_id DESC")])
    op.create_index("uq_sessions_tenant_idempotency_key", "sessions", ["tenant", "idempotency_key"], unique=True,
                    postgresql_where=sa.text("idempotency_key IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("sessions")
