"""Erased calls' tombstones (store/session_erasures.py): a late report never brings an erased call back.

Revision ID: 0004_session_erasures
Revises: 0001_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_session_erasures"
down_revision = "0001_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_erasures",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("session_digest", sa.LargeBinary(), nullable=False),
        sa.Column("forget_after", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "session_digest", name="pk_session_erasures"),
    )
    op.create_index("ix_session_erasures_forget_after", "session_erasures", ["forget_after"])


def downgrade() -> None:
    op.drop_table("session_erasures")
