"""`Database`: the gateway's pool of connections to PostgreSQL (SQLAlchemy's AsyncEngine on asyncpg).

    db = await Database.connect("postgresql+asyncpg://user:password@host:5432/voxfleet")
    async with db.transaction() as conn:          # an AsyncConnection inside BEGIN ... COMMIT (ROLLBACK on error)
        await conn.execute(sessions.insert().values(...))
    await db.close()

`connect` builds the pool and does not need the server to be up: a gateway that starts during a database outage
still serves everything that needs no database, and /readyz says "degraded" until `ping` answers again. Every
connection taken from the pool is checked first (`pool_pre_ping`), so after a PostgreSQL restart the dead
connections are replaced on their next use instead of failing one request each.

The URL carries the password: it is kept as a SQLAlchemy URL (whose str() masks it) and never logged; `where`
names the server without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

DRIVER = "postgresql+asyncpg"


class DatabaseUrlError(ValueError):
    """The configured URL is not a PostgreSQL URL this store can use (the message never repeats the password)."""


def parse_url(url: str | URL) -> URL:
    """A `postgresql+asyncpg://` URL; `postgresql://` and `postgres://` are taken to mean it too."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - the message of a parse error could quote the whole URL, password and all
        raise DatabaseUrlError("the database URL cannot be parsed (expected"
                               " postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE)") from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername=DRIVER)
    raise DatabaseUrlError(f"the database URL must be postgresql+asyncpg:// (found {parsed.drivername}://)")


def where(url: str | URL) -> str:
    """host:port/database, for logs and errors: never the user's password."""
    parsed = parse_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


class Database:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.last_problem = ""  # the kind of the last failed ping (an exception class name), never its message

    @classmethod
    async def connect(cls, url: str | URL, **pool: Any) -> "Database":
        """The pool (no connection is opened yet); the options are from_url's."""
        return cls.from_url(url, **pool)

    @classmethod
    def from_url(cls, url: str | URL, *, pool_size: int = 10, max_overflow: int = 10,
                 pool_timeout: float = 5.0, connect_timeout: float = 5.0,
                 statement_timeout_ms: int = 30_000, application_name: str = "voxfleet") -> "Database":
        """connect() for code outside an event loop (the gateway builds its runtime before the loop runs).
        Bounded: at most pool_size + max_overflow connections per process, a request waits at most pool_timeout
        for one, and no statement runs longer than statement_timeout_ms (a tenant's costly query cannot hold a
        connection for long)."""
        engine = create_async_engine(
            parse_url(url), pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
            pool_timeout=pool_timeout, pool_recycle=1800,
            connect_args={"timeout": connect_timeout,
                          "server_settings": {"application_name": application_name,
                                              "statement_timeout": str(statement_timeout_ms)}})
        return cls(engine)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction: committed when the block ends, rolled back if it raises."""
        async with self.engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autobegin: whatever it did is rolled back when the block ends)."""
        async with self.engine.connect() as conn:
            yield conn

    async def ping(self, timeout: float = 2.0) -> bool:
        """Does the server answer `SELECT 1` within timeout? Never raises."""
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception as error:  # noqa: BLE001 - any failure means "not answering"; the caller logs the kind
            self.last_problem = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
            return False

    async def close(self) -> None:
        await self.engine.dispose()
