"""`Database` against real PostgreSQL servers: a transaction commits, or rolls back when its block raises; and a
PostgreSQL killed and restarted under a live pool: pings fail while it is down, and the first query after its
restart succeeds on a pooled connection the crash broke (pool_pre_ping replaced it), with no retry of ours.

The killed server is a private one (tmp_path): the shared server of the run is never stopped."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import func, select, text

from voxfleet.store import migrations_runner
from voxfleet.store.database import Database, DatabaseUrlError, parse_url, where
from voxfleet.store.schema import sessions
from voxfleet.world import postgres as pg


def _row(session_id: str) -> dict:
    return {"tenant": "acme", "session_id": session_id, "agent": "support", "region": "us-east", "room": "r1",
            "status": "live", "started_at": func.now()}


async def test_a_transaction_commits_or_rolls_back_as_a_whole(database: str):
    db = await Database.connect(database)
    try:
        async with db.transaction() as conn:
            await conn.execute(sessions.insert().values(**_row("s-kept")))
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(sessions.insert().values(**_row("s-dropped")))
                raise RuntimeError("the write path failed after the insert")
        async with db.connection() as conn:
            ids = (await conn.execute(select(sessions.c.session_id, sessions.c.channel))).all()
        print(f"rows after one commit and one rollback: {ids}")
        assert ids == [("s-kept", "web")]  # channel's server default
    finally:
        await db.close()


def test_urls_are_checked_and_named_without_their_password():
    url = "postgresql://voxfleet:s3cret-password-value@db.example:6432/voxfleet"
    assert parse_url(url).drivername == "postgresql+asyncpg"
    assert where(url) == "db.example:6432/voxfleet"
    assert "s3cret" not in str(parse_url(url))  # SQLAlchemy's str() masks it
    for bad in ("mysql://root:s3cret-password-value@h/x", "not a url at all"):
        with pytest.raises(DatabaseUrlError) as raised:
            parse_url(bad)
        print(f"{bad.split(':')[0]}: {raised.value}")
        assert "s3cret" not in str(raised.value)


async def test_the_pool_recovers_from_a_killed_and_restarted_postgres(tmp_path):
    server = pg.PostgresServer(tmp_path / "pg", log_dir=tmp_path / "logs").start()
    db = None
    try:
        url = pg.create_database(server.admin_url, f"t_{uuid.uuid4().hex[:12]}")
        migrations_runner.upgrade(url)
        db = await Database.connect(url, pool_size=2, max_overflow=0)
        async with db.transaction() as conn:  # the pool now holds an open connection
            await conn.execute(sessions.insert().values(**_row("s-before")))

        server.kill()
        down_since = time.monotonic()
        assert not await db.ping(timeout=2)
        print(f"ping while down: False ({db.last_problem})")

        await asyncio.to_thread(server.start)
        restarted_in = time.monotonic() - down_since
        # The first query after the restart, without any retry: the crash broke the pooled connection, and the
        # pre-ping on checkout replaced it.
        async with db.transaction() as conn:
            await conn.execute(sessions.insert().values(**_row("s-after")))
            count = (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar_one()
        print(f"PostgreSQL killed and restarted in {restarted_in:.1f} s; first query after it succeeded;"
              f" rows: {count}")
        assert count == 2  # the committed row survived the crash (crash recovery), and the new one is there
        assert await db.ping()
    finally:
        if db is not None:
            await db.close()
        server.stop()
        server.remove_data()
