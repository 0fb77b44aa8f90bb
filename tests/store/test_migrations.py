"""The store's migrations against a real PostgreSQL (the `postgres` fixture, Debian's server): from an empty
database to every head, to exactly the tables the code queries (store/schema.py and the other owners' modules on
the same `metadata`), the `sessions` table exactly as the contract says, a second upgrade changing nothing, two
upgrades at once taking turns, and `voxfleet db` as the chart's migration Job runs it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from voxfleet.store import migrations_runner
from voxfleet.store.schema import metadata
from voxfleet.world import postgres as pg
from voxfleet.world.postgres import PostgresInfo, run_sync

STORE = Path(migrations_runner.__file__).resolve().parent


def _import_every_table_module() -> None:
    """Each owner's tables register on `metadata` when their module is imported."""
    for path in sorted(STORE.glob("*.py")):
        importlib.import_module(f"voxfleet.store.{path.stem}")


@pytest.fixture
def empty_database(postgres: PostgresInfo):
    name = f"t_empty_{uuid.uuid4().hex[:12]}"
    url = pg.create_database(postgres.admin_url, name)
    yield url
    pg.drop_database(postgres.admin_url, name)


async def _catalog(url: str) -> dict:
    """What PostgreSQL says the schema is: columns (type, nullability, default) and index definitions."""
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", ""), timeout=10)
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        indexes = await connection.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                                         " ORDER BY indexname")
        versions = await connection.fetch("SELECT version_num FROM alembic_version ORDER BY version_num")
    finally:
        await connection.close()
    return {"columns": [tuple(row) for row in columns], "indexes": {row[0]: row[1] for row in indexes},
            "versions": sorted(row[0] for row in versions)}


def test_migrations_from_empty_reach_every_head_and_the_code_s_tables(empty_database: str):
    started = time.monotonic()
    migrations_runner.upgrade(empty_database)
    seconds = time.monotonic() - started
    heads = migrations_runner.head_revisions()
    print(f"upgrade heads from empty: {seconds:.2f} s, heads {sorted(heads)}")
    assert migrations_runner.current_revisions(empty_database) == heads
    assert "0001_sessions" not in heads or heads == {"0001_sessions"}  # 0001 is the root the others build on

    # Every table the code queries exists with every column it names (Alembic's own comparison of the live
    # database with `metadata`: no table, column or type missing or extra).
    _import_every_table_module()
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def differences() -> list:
        engine = create_async_engine(empty_database, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), metadata))
        finally:
            await engine.dispose()

    found = run_sync(differences())
    # Index differences are left out: PostgreSQL reports DESC and partial indexes as expressions Alembic does not
    # compare; the contract test below reads their definitions instead.
    structural = [d for d in found if not (isinstance(d, tuple) and d[0] in ("add_index", "remove_index"))]
    print(f"{len(metadata.tables)} tables in metadata: {sorted(metadata.tables)}; structural differences: "
          f"{len(structural)}")
    assert structural == [], structural


def test_the_sessions_table_is_the_contract(database: str):
    catalog = run_sync(_catalog(database))
    columns = {name: (kind, nullable, default) for table, name, kind, nullable, default in catalog["columns"]
               if table == "sessions"}
    assert list(columns) == ["tenant", "session_id", "agent", "region", "room", "worker", "channel", "status",
                             "started_at", "ended_at", "end_reason", "duration_ms", "report", "transcript",
                             "cost_micros", "idempotency_key", "request_hash"]
    text, ts, js = "text", "timestamp with time zone", "jsonb"
    assert {name: kind for name, (kind, _, _) in columns.items()} == {
        "tenant": text, "session_id": text, "agent": text, "region": text, "room": text, "worker": text,
        "channel": text, "status": text, "started_at": ts, "ended_at": ts, "end_reason": text,
        "duration_ms": "integer", "report": js, "transcript": js, "cost_micros": "bigint",
        "idempotency_key": text, "request_hash": text}
    not_null = {name for name, (_, nullable, _) in columns.items() if nullable == "NO"}
    assert not_null == {"tenant", "session_id", "agent", "region", "room", "channel", "status", "started_at"}
    assert columns["channel"][2] == "'web'::text"
    indexes = catalog["indexes"]
    print("\n".join(f"{name}: {definition}" for name, definition in indexes.items() if "sessions" in definition
                    and " ON public.sessions " in definition))
    assert indexes["pk_sessions"].endswith("USING btree (tenant, session_id)")
    assert indexes["ix_sessions_tenant_started"].endswith("USING btree (tenant, started_at DESC, session_id DESC)")
    assert indexes["ix_sessions_tenant_agent_started"].endswith(
        "USING btree (tenant, agent, started_at DESC, session_id DESC)")
    assert indexes["uq_sessions_tenant_idempotency_key"].startswith("CREATE UNIQUE INDEX")
    assert indexes["uq_sessions_tenant_idempotency_key"].endswith(
        "USING btree (tenant, idempotency_key) WHERE (idempotency_key IS NOT NULL)")


def test_a_second_upgrade_changes_nothing(database: str):
    before = run_sync(_catalog(database))
    started = time.monotonic()
    migrations_runner.upgrade(database)
    seconds = time.monotonic() - started
    after = run_sync(_catalog(database))
    print(f"second upgrade: {seconds:.2f} s; {len(after['columns'])} columns, {len(after['indexes'])} indexes,"
          f" at {after['versions']}")
    assert after == before
    assert set(after["versions"]) == migrations_runner.head_revisions()


def test_two_upgrades_at_once_take_turns(empty_database: str):
    """A retried migration Job beside the first, or two installs sharing a database: three `voxfleet db upgrade`
    processes at once. The advisory lock makes the later ones wait, then find nothing to do (without it they
    race on CREATE TABLE and fail)."""
    env = {**os.environ, "VOXFLEET_DATABASE_URL": empty_database}
    started = time.monotonic()
    runs = [subprocess.Popen([sys.executable, "-m", "voxfleet.cli", "db", "upgrade"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outcomes = [(run.wait(timeout=120), *run.communicate(timeout=10)) for run in runs]
    print(f"3 concurrent upgrades done in {time.monotonic() - started:.2f} s:"
          f" {[out.strip().split(': ', 1)[-1] for _, out, _ in outcomes]}")
    # Each exits 0: none failed on a table another had just created (each read "before" ahead of the lock, so
    # their lines may all say "upgraded"); the version table holds each head once.
    assert [code for code, _, _ in outcomes] == [0, 0, 0], [err for _, _, err in outcomes]
    assert run_sync(_catalog(empty_database))["versions"] == sorted(migrations_runner.head_revisions())


def test_upgrades_in_threads_of_one_process_take_turns(empty_database: str, database: str):
    """Alembic's context is one per process: two upgrades from threads (the dev platform and a test helper) must
    not run each other's migrations."""
    failures: list[BaseException] = []

    def upgrade(url: str) -> None:
        try:
            migrations_runner.upgrade(url)
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=upgrade, args=(url,)) for url in (empty_database, database, empty_database)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    print(f"3 upgrades from threads in {time.monotonic() - started:.2f} s, failures: {failures}")
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    for url in (empty_database, database):
        assert migrations_runner.current_revisions(url) == migrations_runner.head_revisions()


def _voxfleet_db(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VOXFLEET_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "voxfleet.cli", "db", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_voxfleet_db_upgrade_as_the_chart_job_runs_it(empty_database: str, postgres: PostgresInfo):
    first = _voxfleet_db("upgrade", url=empty_database)
    second = _voxfleet_db("upgrade", url=empty_database)
    current = _voxfleet_db("current", url=empty_database)
    for result in (first, second, current):
        print(result.stdout.strip() or result.stderr.strip())
        assert result.returncode == 0, result.stderr
        assert postgres.password not in result.stdout + result.stderr
    assert "upgraded from (empty) to" in first.stdout
    assert "already at" in second.stdout
    assert current.stdout.strip().endswith(": current")


def test_voxfleet_db_says_what_is_wrong_without_the_password(postgres: PostgresInfo):
    wrong_password = postgres.admin_url.replace(postgres.password, "not-" + postgres.password[::-1])
    refused = _voxfleet_db("upgrade", url=wrong_password)
    nothing = _voxfleet_db("upgrade", url="")
    bad = _voxfleet_db("upgrade", url=f"mysql://root:{postgres.password}@127.0.0.1/x")
    for result in (refused, nothing, bad):
        print(f"exit {result.returncode}: {result.stderr.strip()}")
        assert result.returncode != 0
        assert postgres.password not in result.stdout + result.stderr
        assert postgres.password[::-1] not in result.stdout + result.stderr
    assert "password authentication failed" in refused.stderr
    assert f"127.0.0.1:{postgres.port}/postgres" in refused.stderr
    assert "set VOXFLEET_DATABASE_URL" in nothing.stderr
    assert "must be postgresql+asyncpg://" in bad.stderr
