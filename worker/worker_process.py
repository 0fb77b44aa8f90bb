"""The warm worker: loads everything once, then serves sessionsPerWorker calls until it is told to drain.

Warm start builds, before /readyz turns 200: the shared ONNX sessions (Silero VAD, smart-turn v3 when the
agent uses it), the offline engines (eSpeak, one PocketSphinx decoder per slot), the provider registry, the
tool runner with its pooled HTTP client, and tracing. Dispatches before that get 503 not_ready.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Literal

import structlog

from voxfleet.api.call_report import WorkerCallReport
from voxfleet.api.outbound import OutboundPolicy
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.wire import DispatchRequest, LoadReport, SessionState
from voxfleet.api.worker_config import WorkerConfig
from voxfleet.telemetry.resource_attributes import SERVICE_WORKER
from voxfleet.telemetry.tracing import install_globally, set_up_tracing
from voxfleet.worker.providers.registry import ProviderContext, load_providers
from voxfleet.worker.session import Session, WorkerResources
from voxfleet.worker.memory_recycle import MIB, MemoryRecycler
from voxfleet.worker.settings import WorkerSettings
from voxfleet.worker.shared_models import SharedModels
from voxfleet.worker.slots import SlotRefused, SlotTable
from voxfleet.worker.telemetry import metrics

log = structlog.get_logger("voxfleet.worker")

DRAIN_CANCEL_WAIT_S = 15.0
# A draining worker that has served end-of-call reports before (its gateway pulls them) waits this long at most
# for the reports of the calls it finished while draining to be fetched, before it exits and they go with it.
REPORT_HOLD_S = 5.0

# Why a worker stops taking calls: SIGTERM/SIGINT (pod deletion, eviction, rollout), POST /v1/drain (the
# operator, e.g. for a cordoned node) or its own memory past spec.limits.memoryRecycleMb. Each ends the same way:
# no new calls, the live ones finish, the process exits (voxfleet.worker.main says with which code).
DrainReason = Literal["signal", "request", "memory"]  # metrics.DRAINS is labelled by these


def process_age_seconds() -> float:
    """Seconds since this process was started (from /proc: includes interpreter start and imports)."""
    try:
        with open("/proc/self/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.process_time()


class WorkerProcess:
    def __init__(self, config: WorkerConfig, settings: WorkerSettings, platform: PlatformSettings):
        self.config = config
        self.settings = settings
        self.platform = platform
        self.slots: SlotTable[Session] = SlotTable(config.spec.scaling.sessions_per_worker,
                                                   ended_kept=settings.ended_sessions_kept)
        self.ready = False
        self.resources: WorkerResources | None = None
        self.labels = {"tenant": config.tenant, "agent": config.agent, "region": settings.region}
        self.startup_seconds: float | None = None
        self._config_hash = config.config_hash()
        self._drained = asyncio.Event()
        self.drain_reason: DrainReason | None = None
        self._drain_requested = asyncio.Event()
        self._reports_pulled = False  # a gateway has fetched a finished call's report from this worker
        self._reports_fetched: set[str] = set()  # sessions whose finished report was fetched (bounded: see below)
        self.recycler = MemoryRecycler(config.memory_recycle_mb, interval_seconds=settings.memory_sample_seconds,
                                       recycle=self._recycle)
        self._memory_watch: asyncio.Task | None = None
        metrics.start_series(self.labels)
        metrics.CAPACITY.labels(**self.labels).set(self.slots.capacity)
        metrics.READY.labels(**self.labels).set(0)
        metrics.MEMORY_RECYCLE_LIMIT.labels(**self.labels).set(self.recycler.limit_bytes or 0)

    @property
    def draining(self) -> bool:
        return self.slots.draining

    async def warm_up(self) -> None:
        spec = self.config.spec
        load_providers()
        models = await asyncio.to_thread(SharedModels, with_smart_turn=spec.turn_detection.detector == "smart-turn",
                                         batched_vad=self.settings.vad_batched)
        await asyncio.to_thread(models.warm_up)
        providers = ProviderContext(config=self.config, settings=self.settings, platform=self.platform)
        if spec.pipeline.stt.provider == "pocketsphinx":
            from voxfleet.worker.providers.offline import prepare_pocketsphinx

            await asyncio.to_thread(prepare_pocketsphinx, providers, self.slots.capacity)
        if spec.pipeline.tts.provider == "espeak":
            from voxfleet.worker.providers.espeak_voice import ESpeakVoice

            await asyncio.to_thread(ESpeakVoice.shared)
        from voxfleet.worker.tools import ToolLabels, ToolRunner

        tool_runner = ToolRunner(spec.tools, policy=OutboundPolicy.from_settings(self.platform),
                                 labels=ToolLabels(**self.labels))
        self.resources = WorkerResources(config=self.config, settings=self.settings, platform=self.platform,
                                         models=models, providers=providers, tool_runner=tool_runner,
                                         tracing=self._set_up_tracing())
        self.ready = True
        self.startup_seconds = process_age_seconds()
        if not self.draining:  # the idle RSS is judged warm, before any call
            self._memory_watch = asyncio.create_task(self.recycler.watch(), name="memory-recycle")
        metrics.READY.labels(**self.labels).set(1)
        metrics.STARTUP.labels(**self.labels).set(self.startup_seconds)
        log.info("worker ready", startup_seconds=round(self.startup_seconds, 3),
                 models_seconds=round(models.load_seconds, 3), slots=self.slots.capacity,
                 detector=spec.turn_detection.detector, config_hash=self._config_hash)

    def _set_up_tracing(self) -> bool:
        """Spans always (each session's trace id reaches its log lines); Pipecat's conversation, turn and service
        spans only when they are exported (its turn tracking sees every frame). Call content stays out of them
        unless the agent records transcripts (voxfleet.telemetry.tracing.ContentFilter)."""
        tracing = set_up_tracing(SERVICE_WORKER, record_content=self.config.spec.observability.record_transcripts)
        install_globally(tracing)
        if tracing.problem:
            log.warning("spans are not exported", problem=tracing.problem)
        elif tracing.exporting:
            log.info("tracing", export=tracing.target, call_content=tracing.record_content)
        return tracing.exporting

    # -- the control API's view ---------------------------------------------------------------------------------

    def dispatch(self, request: DispatchRequest) -> tuple[SessionState, bool]:
        if (request.tenant, request.agent) != (self.config.tenant, self.config.agent):
            raise SlotRefused("wrong_agent", f"this worker serves agent {self.config.agent!r} of tenant"
                                             f" {self.config.tenant!r}; dispatch to one of the requested agent")
        assert self.resources is not None
        session, created = self.slots.claim(request, lambda r: Session(r, self.resources, self._ended))
        if created:
            session.start()
            metrics.ACTIVE.labels(**self.labels).set(self.slots.active)
            log.info("session dispatched", session_id=request.session_id, room=request.room,
                     recovery=request.recovery, active=self.slots.active)
        return session.state, created

    def session(self, session_id: str) -> SessionState | None:
        session = self.slots.get(session_id)
        return session.state if session else None

    def call_report(self, session_id: str) -> WorkerCallReport | None:
        """The session's end-of-call report (voxfleet.worker.call_report), while the worker remembers it."""
        session = self.slots.get(session_id)
        if session is None:
            return None
        report = session.report()
        if report.complete:
            self._reports_pulled = True
            if len(self._reports_fetched) > 10 * self.slots.capacity + 100:
                self._reports_fetched.clear()  # only the drain's few last calls matter
            self._reports_fetched.add(session_id)
        return report

    async def _hold_for_reports(self, sessions: list[Session]) -> None:
        """Give the gateway REPORT_HOLD_S to fetch the reports of the calls that ended during the drain."""
        deadline = time.monotonic() + REPORT_HOLD_S
        waiting = [s.request.session_id for s in sessions]
        while time.monotonic() < deadline and any(sid not in self._reports_fetched for sid in waiting):
            await asyncio.sleep(0.1)
        missed = [sid for sid in waiting if sid not in self._reports_fetched]
        if missed:
            log.info("exiting with reports not fetched", sessions=len(missed), waited_s=REPORT_HOLD_S)

    async def end_session(self, session_id: str) -> SessionState | None:
        session = self.slots.get(session_id)
        if session is None:
            return None
        if not session.ended:
            await session.end("deleted")
            await session.wait(5.0)
        return session.state

    def load(self) -> LoadReport:
        return LoadReport(worker=self.settings.pod_name, tenant=self.config.tenant, agent=self.config.agent,
                          region=self.settings.region, capacity=self.slots.capacity, active=self.slots.active,
                          free=self.slots.free(ready=self.ready), ready=self.ready and not self.draining,
                          draining=self.draining, config_hash=self._config_hash,
                          idle_seconds=round(self.slots.idle_seconds(), 3))

    def _ended(self, session: Session) -> None:
        self.slots.release(session.request.session_id)
        metrics.ACTIVE.labels(**self.labels).set(self.slots.active)
        if self.draining and self.slots.active == 0:
            self._drained.set()

    # -- shutdown -----------------------------------------------------------------------------------------------

    def request_drain(self, reason: DrainReason) -> LoadReport:
        """Stop taking sessions now (readyz 503, load draining, dispatch 409 draining); idempotent: the first
        reason stays. main.serve() then runs drain() and exits. Answers the load, which says draining."""
        if self.drain_reason is None:
            self.drain_reason = reason
            self.slots.draining = True
            metrics.READY.labels(**self.labels).set(0)
            metrics.DRAINS.labels(**self.labels, reason=reason).inc()
            if self._memory_watch is not None and reason != "memory":
                self._memory_watch.cancel()
            log.info("drain requested", reason=reason, live_sessions=self.slots.active)
            self._drain_requested.set()
        return self.load()

    async def drain_requested(self) -> DrainReason:
        await self._drain_requested.wait()
        assert self.drain_reason is not None
        return self.drain_reason

    def _recycle(self, rss_bytes: int) -> None:
        limit = self.recycler.limit_bytes or 0
        # The one line an operator greps for: why this worker restarts, and how far past its limit it was.
        log.warning("worker recycling", reason="memory", rss_mib=round(rss_bytes / MIB, 1),
                    limit_mib=round(limit / MIB, 1), idle_rss_mib=round(self.recycler.idle_rss / MIB, 1),
                    live_sessions=self.slots.active, process_age_seconds=round(process_age_seconds(), 1))
        self.request_drain("memory")

    def termination_message(self) -> str:
        """What the kubelet shows as the container's last state (kubectl describe pod): why it exited."""
        if self.drain_reason == "memory":
            return (f"memory recycle: resident {self.recycler.last_rss / MIB:.0f} MiB passed the"
                    f" {(self.recycler.limit_bytes or 0) / MIB:.0f} MiB limit (spec.limits.memoryRecycleMb);"
                    " live calls finished, restarting")
        return f"drained ({self.drain_reason or 'signal'}): live calls finished"

    async def drain(self) -> None:
        """Stop taking sessions, let live calls finish within maxSessionSeconds (+ grace), end the rest."""
        if self.drain_reason is None:
            self.request_drain("signal")
        limit = self.config.spec.limits.max_session_seconds + self.settings.drain_grace_seconds
        live = self.slots.live()
        log.info("draining", reason=self.drain_reason, live_sessions=len(live), limit_seconds=limit)
        if live:
            if self.slots.active == 0:
                self._drained.set()
            try:
                await asyncio.wait_for(self._drained.wait(), limit)
            except TimeoutError:
                for session in self.slots.live():
                    await session.end("drained")
                await asyncio.gather(*(s.wait(DRAIN_CANCEL_WAIT_S) for s in self.slots.live()))
            if self._reports_pulled:
                await self._hold_for_reports(live)
        if self.resources is not None:
            await self.resources.tool_runner.aclose()
            try:
                from voxfleet.worker.providers.cloud import aclose_cloud_clients
            except ModuleNotFoundError:
                pass
            else:
                await aclose_cloud_clients(self.resources.providers)
        if self._memory_watch is not None:
            self._memory_watch.cancel()
        log.info("drained", reason=self.drain_reason, ended_sessions=len(live))
