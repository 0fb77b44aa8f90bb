"""The retention sweeper: deletes call records older than their tenant's `spec.history.retentionDays`.

Every gateway replica runs one, every `history_sweep_seconds`; one sweeps at a time across all replicas (a
PostgreSQL session advisory lock taken with pg_try_advisory_lock: the others skip their turn, and a replica that
dies mid-sweep releases it with its connection). A sweep goes through the tenants that have records (a loose index
scan) and deletes each one's records that started before now - retentionDays, oldest first, in batches of
`history_sweep_batch` rows, one transaction per batch: locks stay short and a sweep that meets years of backlog
makes progress without one huge transaction. Records of a tenant the gateway no longer knows (its Tenant was
deleted) age out on the default retention. It also forgets the tombstones of erased calls once no report can
arrive for them any more (store/session_erasures.py).

Rows are deleted, not hidden: nothing of an expired call stays in the table (its webhook deliveries and usage
sums are other tables with their own lives: usage holds no call content).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import text

from voxfleet.api.tenant import History
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.store import session_erasures, session_records
from voxfleet.store.database import Database

log = structlog.get_logger(__name__)

# pg_try_advisory_lock's key: any constant the rest of the platform does not use ("vf history" in ASCII).
SWEEP_LOCK_KEY = 0x7666_2068_6973_7479
DEFAULT_SWEEP_SECONDS = 300.0
DEFAULT_BATCH = 1000


@dataclass(frozen=True)
class SweepResult:
    swept: bool  # False: another replica held the lock
    records_deleted: int = 0
    tombstones_forgotten: int = 0
    tenants: int = 0


class RetentionSweeper:
    def __init__(self, database: Database, tenants: TenantDirectory, settings: object | None = None, *,
                 interval_seconds: float | None = None, batch: int | None = None,
                 registry: CollectorRegistry | None = None):
        self.database = database
        self.tenants = tenants
        self.interval = interval_seconds or getattr(settings, "history_sweep_seconds", DEFAULT_SWEEP_SECONDS)
        self.batch = batch or getattr(settings, "history_sweep_batch", DEFAULT_BATCH)
        self._task: asyncio.Task | None = None
        self.deleted = Counter("voxfleet_gateway_history_deleted", "Rows the retention sweeper deleted: call records"
                               " past their tenant's retention, tombstones of erased calls past their time.",
                               ["what"], registry=registry) if registry is not None else None
        self.last_sweep = Gauge("voxfleet_gateway_history_last_sweep_timestamp_seconds", "When this replica last"
                                " finished a retention sweep (or found another replica sweeping): a stale value means"
                                " records outlive their retention.", registry=registry) if registry is not None else None

    def retention_days(self, tenant: str) -> int:
        info = self.tenants.get(tenant)
        return info.spec.history.retention_days if info is not None else History().retention_days

    async def sweep_once(self, now: datetime | None = None) -> SweepResult:
        now = now or datetime.now(timezone.utc)
        async with self.database.engine.connect() as conn:
            if not await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": SWEEP_LOCK_KEY}):
                await conn.rollback()
                return SweepResult(swept=False)
            await conn.commit()  # the session lock outlives this; each batch below is its own transaction
            try:
                deleted = 0
                tenants = list(await session_records.tenants_with_records(conn))
                await conn.commit()
                for tenant in tenants:
                    cutoff = now - timedelta(days=self.retention_days(tenant))
                    while True:
                        gone = await session_records.delete_older_than(conn, tenant=tenant, cutoff=cutoff,
                                                                       batch=self.batch)
                        await conn.commit()
                        deleted += gone
                        if gone < self.batch:
                            break
                forgotten = 0
                while True:
                    gone = await session_erasures.forget_expired(conn, now=now, batch=self.batch)
                    await conn.commit()
                    forgotten += gone
                    if gone < self.batch:
                        break
            finally:
                with contextlib.suppress(Exception):  # a broken connection has released the lock already
                    await conn.rollback()
                    await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SWEEP_LOCK_KEY})
                    await conn.commit()
        if self.deleted is not None:
            self.deleted.labels("records").inc(deleted)
            self.deleted.labels("tombstones").inc(forgotten)
        if deleted or forgotten:
            log.info("history retention swept", records_deleted=deleted, tombstones_forgotten=forgotten,
                     tenants=len(tenants))
        return SweepResult(swept=True, records_deleted=deleted, tombstones_forgotten=forgotten, tenants=len(tenants))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="history retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
                if self.last_sweep is not None:
                    self.last_sweep.set_to_current_time()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a database outage: try again next period
                log.warning("history retention sweep failed", error_type=type(error).__name__)
            await asyncio.sleep(self.interval)
