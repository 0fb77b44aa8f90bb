"""The live calls' index (store/live_sessions.py): the end-of-call report sweeper reads only live rows.

Revision ID: 0005_live_sessions
Revises: 0001_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_live_sessions"
down_revision = "0001_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_live_started", "sessions", ["started_at", "tenant", "session_id"],
                    postgresql_where=sa.text("status = 'live'"))


def downgrade() -> None:
    op.drop_index("ix_sessions_live_started", table_name="sessions")
