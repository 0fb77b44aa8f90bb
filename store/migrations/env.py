"""Alembic's environment for the store: online migrations only, over asyncpg, under an advisory lock.

The URL comes from `config.attributes["url"]` (store/migrations_runner.py), never from an ini file or the
environment, so it is not printed or %-interpolated. All pending migrations run in one transaction (PostgreSQL's
DDL is transactional): a failed upgrade leaves the database as it was.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from voxfleet.store.schema import metadata

# Any fixed 64-bit number, the same in every voxfleet: two `voxfleet db upgrade` at once (a Job retried while the
# first still runs, two installs sharing a database) take turns instead of racing on CREATE TABLE.
MIGRATION_LOCK_ID = 0x766F78666C656574  # "voxfleet"


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def _online() -> None:
    engine = create_async_engine(context.config.attributes["url"], poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("voxfleet's migrations run online only (voxfleet db upgrade)")
asyncio.run(_online())
