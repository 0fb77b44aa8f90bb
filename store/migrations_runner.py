"""Apply the store's Alembic migrations: `upgrade(url)` brings a database to every head (`alembic upgrade heads`).

Synchronous on purpose: Alembic's API is, and this runs once per deploy (the chart's pre-install/pre-upgrade Job
`voxfleet db upgrade`, `voxfleet dev` before it starts the gateway, the tests' `database` fixture). It runs the
migrations on asyncpg in a thread of its own with its own event loop, so it may be called from anywhere, also from
inside a running loop (which it then blocks: `await upgrade_async(url)` does not). The gateway never migrates at
start: with several replicas rolling, the schema change is the deploy's step, before any new replica serves.

Migrations live in store/migrations/versions/ with fixed revision ids; branches are fine (several may depend on
0001_sessions), which is why this applies "heads", not "head". Concurrent runs are safe: env.py takes a
PostgreSQL advisory lock before reading the version table, so a second process's run waits and then finds nothing
to do (within one process, runs take turns on a lock: Alembic's context is process-global).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from voxfleet.store.database import parse_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # Handed to env.py as an object: a URL put into the ini options would be %-interpolated and could be printed.
    config.attributes["url"] = parse_url(url)
    return config


def _in_own_thread(work) -> None:
    """Run work() in a fresh thread (env.py's asyncio.run needs a thread without a running loop); re-raise."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            failure.append(error)

    thread = threading.Thread(target=run, name="voxfleet-db-migrations")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


# Alembic's `context` (what env.py imports) is one global proxy per process: two upgrades in threads of one process
# would run each other's migrations. Within a process they take turns here; across processes the advisory lock.
_ONE_AT_A_TIME = threading.Lock()


def upgrade(url: str | URL) -> None:
    """Apply every migration not yet applied (to all heads). A no-op on an up-to-date database."""
    def run() -> None:
        with _ONE_AT_A_TIME:
            command.upgrade(alembic_config(url), "heads")

    _in_own_thread(run)


async def upgrade_async(url: str | URL) -> None:
    await asyncio.to_thread(upgrade, url)


def head_revisions() -> set[str]:
    """The revisions a fully migrated database is at (from the migration files; no database needed)."""
    return set(ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://localhost/x")).get_heads())


def current_revisions(url: str | URL) -> set[str]:
    """The revisions the database says it is at (empty: never migrated)."""
    found: set[str] = set()

    async def read() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlalchemy.pool import NullPool

        engine = create_async_engine(parse_url(url), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                found.update(await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads()))
        finally:
            await engine.dispose()

    _in_own_thread(lambda: asyncio.run(read()))
    return found
