"""End-of-call reports, from the worker that ran the call to the `sessions` row: the gateway is the only writer.

The gateway PULLS each report from the worker control API (`GET /v1/sessions/{id}/report`, namespace worker
token) once it learns the call has ended, rather than having workers push them:

- trust: a worker may be made to do anything its spec allows (docs/security.md). Pulled, a report is only ever
  read from a worker of the session's own tenant (found by the session locator among the tenant's pods, which
  the registry trusts only in their Tenant's namespace), for the session id the gateway asked about, so no
  worker can address a record at all, let alone another tenant's. A push endpoint would be a new inbound
  surface where the gateway must prove all of that from a bearer token; pulling needs no new credential and no
  new network path (the gateway already calls workers; workers never call the gateway).
- reliability: the report is kept by the worker with the ended session (`endedSessionsKept`), so a gateway
  that was down when the call ended still finds it; the signal that a call ended may be lost (a LiveKit webhook
  missed during a restart), so a sweeper walks the live rows in bounded batches and settles the ones whose call
  has ended, or whose worker is gone (`worker-lost`). Every gateway replica sweeps; every write is idempotent.

One transaction per ended call (the outbox pattern): the row becomes `ended` with its report, cost and (only
when the agent records transcripts) transcript; the day's usage is incremented (voxfleet.store.usage.add_call);
`session.ended` is enqueued for the tenant's webhooks (voxfleet.store.webhook_outbox.enqueue) with an event id
derived from the session, so a second settle - another replica, a retried sweep - finds the row ended and
changes nothing, and even an enqueue repeated by accident delivers nothing twice. A row erased by the tenant
(gone, or tombstoned in session_erasures) is never written again: its late report is dropped.

What the gateway takes from a report, and what it answers for itself: the tenant, agent, region, start time and
duration are the gateway's (from the row it wrote at create and its own clock); the worker's figures are checked
against their bounds (voxfleet.api.call_report) and the call (no more speech-to-text audio than the call lasted);
the cost is the platform's price list applied to them (voxfleet.gateway.pricing), never a worker's figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, FastAPI
from livekit.protocol import models
from pydantic import ValidationError
from sqlalchemy import select, update

from voxfleet.api.call_report import (
    MAX_REPORT_BYTES,
    MAX_REPORT_RECOVERIES,
    MAX_REPORT_TOOL_CALLS,
    MAX_REPORT_TURNS,
    MAX_TRANSCRIPT_LINES,
    MAX_USAGE_CHARACTERS,
    MAX_USAGE_MS,
    MAX_USAGE_TOKENS,
    CallReport,
    CallUsage,
    ReportRecovery,
    WorkerCallReport,
)
from voxfleet.gateway import session_ids
from voxfleet.gateway.pricing import PriceList

from voxfleet.gateway.session_locator import Located
from voxfleet.gateway.worker_client import WorkerUnreachable
from voxfleet.store import live_sessions, session_erasures, usage, webhook_outbox
from voxfleet.store.schema import sessions

if TYPE_CHECKING:
    from voxfleet.gateway.runtime import GatewayRuntime

log = structlog.get_logger(__name__)

# How often each replica walks the live rows, and how many it looks at per walk (each costs a locate: one or a
# few worker calls): 1,000 live calls are all looked at every 5 sweeps.
SWEEP_SECONDS = 15.0
SWEEP_BATCH = 200
# A row younger than this is left alone by the sweeper (its call has barely begun; room events and reads of
# the call settle the quick ones sooner).
SETTLE_GRACE_SECONDS = 2.0
# No worker knows a live row's call for this long (and no recovery is running for it): its worker died without
# reporting; the call is ended as `worker-lost`. Longer than any agent's recovery deadline (at most 120 s).
LOST_AFTER_SECONDS = 150.0
# After a LiveKit event says a call's room or caller is gone: when to look for its report.
AFTER_ROOM_EVENT_SECONDS = (0.5, 1.5, 3.0, 6.0, 12.0)
MAX_PENDING = 2000  # room-event lookups in flight per replica; more are left to the sweeper


@dataclass(frozen=True)
class ReportPart:
    """One worker's report of (its part of) a call, and the region that worker runs in."""

    report: WorkerCallReport
    region: str


@dataclass(frozen=True)
class Settled:
    outcome: str  # ended | worker_lost | live | not_found_yet | no_record | already_ended | erased | refused
    report: CallReport | None = None


def ended_event_id(tenant: str, session_id: str) -> str:
    """The `session.ended` event's id: the same for every replica and every retry (the receiver's dedupe key),
    and it names neither the tenant nor the session."""
    return "evt_" + hashlib.sha256(f"session.ended\x00{tenant}\x00{session_id}".encode()).hexdigest()[:40]


class CallReports:
    def __init__(self, app: FastAPI, runtime: GatewayRuntime, *, sweep_seconds: float = SWEEP_SECONDS,
                 lost_after_seconds: float = LOST_AFTER_SECONDS, grace_seconds: float = SETTLE_GRACE_SECONDS):
        self.app = app
        self.runtime = runtime
        self.sweep_seconds = sweep_seconds
        self.lost_after_seconds = lost_after_seconds
        self.grace_seconds = grace_seconds
        self._missing_since: dict[tuple[str, str], float] = {}  # (tenant, session) -> monotonic, no worker had it
        self._after: tuple[datetime, str, str] | None = None  # the sweeper's place among the live rows
        self._pending: dict[tuple[str, str], asyncio.Task] = {}
        self._task: asyncio.Task | None = None

    @property
    def database(self):
        return getattr(self.app.state, "database", None)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep_forever(), name="call report sweeper")

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._pending.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- signals --------------------------------------------------------------------------------------------

    def room_ended(self, room: models.Room, participant: models.ParticipantInfo | None = None) -> None:
        """A LiveKit event says the room closed or a caller left: look for the call's report soon (in the
        background; LiveKit gets its answer now)."""
        found = self.runtime.recovery.room_session(room, participant)
        if found is None or found.session_id is None:
            return
        self.session_ended_soon(found.name.tenant, found.session_id)

    def session_ended_soon(self, tenant: str, session_id: str) -> None:
        key = (tenant, session_id)
        if self.database is None or key in self._pending or len(self._pending) >= MAX_PENDING:
            return
        task = asyncio.create_task(self._settle_soon(tenant, session_id), name="call report")
        self._pending[key] = task
        task.add_done_callback(lambda _t: self._pending.pop(key, None))

    async def _settle_soon(self, tenant: str, session_id: str) -> None:
        for delay in AFTER_ROOM_EVENT_SECONDS:
            await asyncio.sleep(delay)
            try:
                settled = await self.settle(tenant, session_id)
            except Exception as error:  # noqa: BLE001 - the sweeper tries again later
                log.warning("call report not settled", error=type(error).__name__, session_id=session_id)
                return
            if settled.outcome not in ("live", "not_found_yet"):
                return

    # -- the sweeper ----------------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - a database or apiserver blip: next round
                log.warning("call report sweep failed", error=type(error).__name__)

    async def sweep(self) -> dict[str, int]:
        """Look at up to SWEEP_BATCH live rows (continuing after the last one looked at); settle what ended."""
        database = self.database
        if database is None:
            return {}
        cutoff = datetime.now(UTC) - timedelta(seconds=self.grace_seconds)
        async with database.connection() as conn:
            rows = await live_sessions.page(conn, started_before=cutoff, after=self._after, limit=SWEEP_BATCH)
        self._after = (rows[-1].started_at, rows[-1].tenant, rows[-1].session_id) if len(rows) == SWEEP_BATCH \
            else None  # a short page: the next sweep starts over from the oldest
        forget_before = time.monotonic() - 4 * self.lost_after_seconds  # calls erased or ended elsewhere meanwhile
        for key in [k for k, since in self._missing_since.items() if since < forget_before]:
            del self._missing_since[key]
        outcomes: dict[str, int] = {}
        for row in rows:
            settled = await self.settle(row.tenant, row.session_id, sweeping=True)
            outcomes[settled.outcome] = outcomes.get(settled.outcome, 0) + 1
        if rows:
            log.debug("call report sweep", **outcomes)
        return outcomes

    # -- settling one call ----------------------------------------------------------------------------------

    async def settle(self, tenant: str, session_id: str, *, sweeping: bool = False) -> Settled:
        """Write the call's end if it has ended: from its worker's report, or as `worker-lost` when no worker
        has known it for lost_after_seconds (sweeper only)."""
        database = self.database
        if database is None:
            return Settled("no_record")
        async with database.connection() as conn:
            row = (await conn.execute(select(sessions).where(sessions.c.tenant == tenant,
                                                             sessions.c.session_id == session_id))).mappings().first()
        if row is None:
            return Settled("no_record")
        if row["status"] != "live":
            return Settled("already_ended")
        ref = session_ids.decode(session_id, tenant=tenant, keys=self.runtime.session_keys)
        if ref is None:
            return Settled("no_record")  # not a placed call's id (an idempotency placeholder): not ours to end
        located = await self.runtime.locator.locate(tenant, session_id, ref)
        key = (tenant, session_id)
        if any(x.state.phase != "ended" for x in located):
            self._missing_since.pop(key, None)
            return Settled("live")
        reports, refused = await self._reports(tenant, session_id,
                                               [x for x in located if x.state.phase == "ended"])
        if reports:
            self._missing_since.pop(key, None)
            return await self._write(row, self._report_from(row, reports))
        if refused and not self.runtime.recovery.recovering(session_id):
            # Its worker ended the call and will never say anything else (a report is frozen at the end): end it
            # from the gateway's facts now rather than asking again and again.
            self._missing_since.pop(key, None)
            return await self._write(row, self._lost_report(row))
        if not sweeping or self.runtime.recovery.recovering(session_id):
            return Settled("not_found_yet")
        now = time.monotonic()
        first = self._missing_since.setdefault(key, now)
        if now - first < self.lost_after_seconds and not ref.expired():
            return Settled("not_found_yet")
        self._missing_since.pop(key, None)
        return await self._write(row, self._lost_report(row))

    async def _reports(self, tenant: str, session_id: str, ended: list[Located]) -> tuple[list[ReportPart], bool]:
        """The usable reports of the workers that ended the call, and whether any worker's report was refused."""
        reports, refused = [], False
        for located in ended:
            report, problem = await self._fetch(tenant, session_id, located)
            if report is not None:
                reports.append(ReportPart(report, located.worker.region))
            refused = refused or problem
        return reports, refused

    async def _fetch(self, tenant: str, session_id: str, located: Located) -> tuple[WorkerCallReport | None, bool]:
        """(the worker's report or None when it has none yet, True when what it said was refused: logged, counted,
        never written)."""
        worker = located.worker
        if worker.tenant != tenant or not worker.ip:
            return None, False
        try:
            answer = await self.runtime.worker_client.raw("GET", worker.ip, f"/v1/sessions/{session_id}/report",
                                                          max_bytes=MAX_REPORT_BYTES)
        except WorkerUnreachable:
            return None, False
        if answer.status != 200:
            return None, False
        problem = None
        report = None
        if len(answer.body) > MAX_REPORT_BYTES:
            problem = "too_large"
        else:
            try:
                report = WorkerCallReport.model_validate_json(answer.body)
            except ValidationError as error:
                problem = "invalid: " + ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors()[:5])
        if report is not None and report.session_id != session_id:
            problem, report = "another_session", None
        elif report is not None and report.worker != worker.name:
            problem, report = "another_worker", None
        elif report is not None and not report.complete:
            report = None  # it has not finished writing it: the call is ending right now
        if problem:
            self.runtime.metrics.call_reports.labels(tenant=tenant, outcome="refused").inc()
            log.warning("worker report refused", problem=problem[:300], pod=worker.name, namespace=worker.namespace,
                        session_id=session_id)
        return report, problem is not None

    # -- building the stored report -------------------------------------------------------------------------

    def _report_from(self, row: Any, parts: list[ReportPart]) -> CallReport:
        """One report of the whole call from its workers' parts (a recovered call has one per worker that ran
        it), in the order they ran; the gateway's own facts around them."""
        parts = sorted(parts, key=lambda p: p.report.started_at)
        reports = [p.report for p in parts]
        last = reports[-1]
        started_at: datetime = row["started_at"]
        ended_at = min(max(last.ended_at or datetime.now(UTC), started_at), datetime.now(UTC))
        duration_ms = int((ended_at - started_at).total_seconds() * 1000)
        turns, tool_calls, recoveries = [], [], []
        transcript: list | None = [] if self._records_transcripts(row) else None
        interruptions = false_interruptions = 0
        usage_sum = {"stt_ms": 0, "llm_prompt_tokens": 0, "llm_completion_tokens": 0, "tts_characters": 0}
        truncated = False
        previous_worker = row["worker"]
        for part, region in ((p.report, p.region) for p in parts):
            offset_ms = max(0, int((part.started_at - started_at).total_seconds() * 1000))
            for turn in part.turns:
                if len(turns) >= MAX_REPORT_TURNS:
                    truncated = True
                    break
                turns.append(turn.model_copy(update={"index": len(turns),
                                                     "at_ms": min(turn.at_ms + offset_ms, MAX_USAGE_MS)}))
            tool_calls += part.tool_calls[:MAX_REPORT_TOOL_CALLS - len(tool_calls)]
            interruptions += part.interruptions
            false_interruptions += part.false_interruptions
            for name in usage_sum:
                usage_sum[name] += getattr(part.usage, name)
            if transcript is not None and part.transcript:
                room = max(0, MAX_TRANSCRIPT_LINES - len(transcript))
                transcript += [line.model_copy(update={"at_ms": min(line.at_ms + offset_ms, MAX_USAGE_MS)})
                               for line in part.transcript[:room]]
            if part.recovered and len(recoveries) < MAX_REPORT_RECOVERIES:
                recoveries.append(ReportRecovery(
                    at=part.started_at, to_worker=part.worker,
                    from_worker=previous_worker if previous_worker != part.worker else None,
                    outcome="restarted_worker" if previous_worker == part.worker
                    else "same_region" if region == row["region"] else "other_region"))
            previous_worker = part.worker
            truncated = truncated or part.truncated
        # No more caller audio was transcribed than the call lasted: a report saying otherwise is clipped to it.
        usage_sum["stt_ms"] = min(usage_sum["stt_ms"], duration_ms)
        call_usage = CallUsage(stt_ms=min(usage_sum["stt_ms"], MAX_USAGE_MS),
                               llm_prompt_tokens=min(usage_sum["llm_prompt_tokens"], MAX_USAGE_TOKENS),
                               llm_completion_tokens=min(usage_sum["llm_completion_tokens"], MAX_USAGE_TOKENS),
                               tts_characters=min(usage_sum["tts_characters"], MAX_USAGE_CHARACTERS))
        prices = self._prices()
        return CallReport(session_id=row["session_id"], agent=row["agent"], region=row["region"], worker=last.worker,
                          channel=row["channel"], started_at=started_at, ended_at=ended_at, duration_ms=duration_ms,
                          end_reason=last.end_reason or "error", source="worker", turns=turns,
                          interruptions=interruptions, false_interruptions=false_interruptions,
                          tool_calls=tool_calls, usage=call_usage,
                          cost_micros=prices.cost_micros(call_usage, duration_ms), currency=prices.currency,
                          recoveries=recoveries, transcript=transcript, truncated=truncated)

    def _lost_report(self, row: Any) -> CallReport:
        started_at: datetime = row["started_at"]
        ended_at = max(datetime.now(UTC), started_at)
        duration_ms = int((ended_at - started_at).total_seconds() * 1000)
        prices = self._prices()
        return CallReport(session_id=row["session_id"], agent=row["agent"], region=row["region"], worker=row["worker"],
                          channel=row["channel"], started_at=started_at, ended_at=ended_at, duration_ms=duration_ms,
                          end_reason="worker-lost", source="gateway", usage=CallUsage(),
                          cost_micros=prices.cost_micros(CallUsage(), duration_ms), currency=prices.currency)

    def _prices(self) -> PriceList:
        return getattr(self.runtime.settings, "prices", None) or PriceList()

    def _records_transcripts(self, row: Any) -> bool:
        """The agent's spec says so now (a deleted agent: no; the transcript is dropped, never stored)."""
        tenant = self.runtime.tenants.get(row["tenant"])
        if tenant is None:
            return False
        agent = self.runtime.agents.get(tenant.namespace, row["agent"])
        return agent is not None and agent.spec.observability.record_transcripts

    # -- the one transaction --------------------------------------------------------------------------------

    async def _write(self, row: Any, report: CallReport) -> Settled:
        tenant, session_id = row["tenant"], row["session_id"]
        stored = report.model_dump(mode="json", by_alias=True, exclude={"transcript"})
        transcript = None if report.transcript is None else [
            line.model_dump(mode="json", by_alias=True) for line in report.transcript]
        async with self.database.transaction() as conn:
            # Erased by the tenant: nothing of it is written again. (Its use is counted once, by whoever ended it:
            # here for a call that ended by itself, by the erase for a live call, gateway/sessions_api.py.)
            if await session_erasures.was_erased(conn, tenant=tenant, session_id=session_id):
                return Settled("erased")
            ended = await conn.execute(
                update(sessions)
                .where(sessions.c.tenant == tenant, sessions.c.session_id == session_id, sessions.c.status == "live")
                .values(status="ended", ended_at=report.ended_at, end_reason=report.end_reason,
                        duration_ms=report.duration_ms, report=stored, transcript=transcript,
                        cost_micros=report.cost_micros, worker=report.worker)
                .returning(sessions.c.session_id))
            if ended.first() is None:  # erased or ended meanwhile (another replica): nothing to add
                return Settled("already_ended")
            # Usage counts on the UTC day the call ended (the month's limits read the days of the month).
            await usage.add_call(conn, tenant=tenant, agent=row["agent"], day=report.ended_at.astimezone(UTC).date(),
                                 call_ms=report.duration_ms, usage=report.usage, cost_micros=report.cost_micros)
            data = report.model_dump(mode="json", by_alias=True, exclude_none=False)
            await webhook_outbox.enqueue(conn, tenant=tenant, event_type="session.ended", payload=data,
                                         event_id=ended_event_id(tenant, session_id), occurred_at=report.ended_at)
        self.runtime.metrics.count_call_usage(tenant=tenant, agent=row["agent"], call_ms=report.duration_ms,
                                              cost_micros=report.cost_micros)
        outcome = "worker_lost" if report.end_reason == "worker-lost" else "ended"
        self.runtime.metrics.call_reports.labels(tenant=tenant, outcome=outcome).inc()
        log.info("call report stored", outcome=outcome, session_id=session_id, tenant=tenant, agent=row["agent"],
                 end_reason=report.end_reason, duration_ms=report.duration_ms, turns=len(report.turns),
                 cost_micros=report.cost_micros)
        return Settled(outcome, report)


def call_reports_of(app: FastAPI) -> CallReports | None:
    return getattr(app.state, "call_reports", None)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's own lifespan (FastAPI nests an included router's), after the runtime started."""
    runtime: GatewayRuntime = app.state.runtime
    settings = runtime.settings
    reports = CallReports(app, runtime, sweep_seconds=settings.call_report_sweep_seconds,
                          lost_after_seconds=settings.call_report_lost_after_seconds)
    app.state.call_reports = reports
    reports.start()
    try:
        yield
    finally:
        await reports.stop()


# No routes: included for its lifespan (the sweeper). The reports are served by GET /v1/sessions/{id} (history).
router = APIRouter(lifespan=_lifespan)
