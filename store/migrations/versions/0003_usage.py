"""usage_daily: a tenant's usage and cost per day and agent (store/usage_table.py).

A branch beside the webhooks' (0002) from the sessions' migration: the runner always upgrades to `heads`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_usage"
down_revision = "0001_sessions"
branch_labels = None
depends_on = None

_COUNTERS = ("sessions", "call_ms", "stt_ms", "llm_prompt_tokens", "llm_completion_tokens", "tts_characters",
             "cost_micros")


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("agent", sa.Text(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default=sa.text("0")) for name in _COUNTERS),
        sa.PrimaryKeyConstraint("tenant", "day", "agent", name="pk_usage_daily"),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
