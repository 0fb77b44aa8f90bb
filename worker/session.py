"""One call: its pipeline in its room, from dispatch to the freed slot, whatever happens in between.

A session runs in its own asyncio task with its own Pipecat WorkerRunner, so nothing one session does (an
exception in a processor, a stuck provider, a cancelled room) reaches another; the worker only sees the task
end. Every way out - the caller leaves, the room closes, maxSessionSeconds, idle timeout, DELETE, drain, an
error while building or running - goes through `_run`'s finally, which frees the slot, counts the end reason
and logs one usage record.

As it goes, the session checkpoints the call into its room (room_checkpoint.py: sealed, in the room's metadata)
after each caller and agent turn and each tool call. A recovered session (dispatched with `recovery`) reads it
when it joins: the conversation so far, the session's metadata, eval mode, the caller and the tool calls made
(tool_ledger.py), then says the recovery line and goes on from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.workers.runner import WorkerRunner

from voxfleet.api import room_names
from voxfleet.api.call_report import WorkerCallReport
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.wire import DispatchRequest, EndReason, SessionState
from voxfleet.api.worker_config import WorkerConfig
from voxfleet.telemetry.logging_setup import bind_call
from voxfleet.worker.pipeline_builder import SessionPipeline, build_session_pipeline, close_conversation_trace
from voxfleet.worker.providers.registry import ProviderContext
from voxfleet.worker.settings import WorkerSettings
from voxfleet.worker.shared_models import SharedModels
from voxfleet.worker.telemetry import metrics
from voxfleet.worker.call_checkpoint import CallCheckpoint
from voxfleet.worker.call_report import build_report
from voxfleet.worker.checkpoint_seal import checkpoint_key
from voxfleet.worker.eval_record import recorder_for
from voxfleet.worker.room_checkpoint import RoomCheckpoint
from voxfleet.worker.tool_calls import ToolRunnerLike
from voxfleet.worker.tool_ledger import UNCONFIRMED_LINE, ToolLedger

log = structlog.get_logger("voxfleet.worker.session")
TRACER = trace.get_tracer("voxfleet.worker")

CANCEL_TIMEOUT_S = 10.0
# From the ask to end to "ended": past this the session task itself is cancelled, so no stuck processor keeps a
# finished call's slot (Pipecat gives up on a held CancelFrame after pipeline_builder.CANCEL_FRAME_TIMEOUT_S).
ENDING_DEADLINE_S = 8.0
GREETING_WAIT_S = 2.0


@dataclass
class WorkerResources:
    """Everything built once per process that sessions use."""

    config: WorkerConfig
    settings: WorkerSettings
    platform: PlatformSettings
    models: SharedModels
    providers: ProviderContext
    tool_runner: ToolRunnerLike
    tracing: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, str]:
        return {"tenant": self.config.tenant, "agent": self.config.agent, "region": self.settings.region}


class Session:
    def __init__(self, request: DispatchRequest, resources: WorkerResources,
                 on_ended: Callable[["Session"], None]):
        self.request = request
        self._resources = resources
        self._on_ended = on_ended
        self.state = SessionState(session_id=request.session_id, tenant=request.tenant, agent=request.agent,
                                  region=request.region, room=request.room, phase="starting",
                                  started_at=datetime.now(UTC), recovery=request.recovery)
        self._started = time.monotonic()
        self._end_reason: EndReason | None = None
        self._runner: WorkerRunner | None = None
        self._pipeline: SessionPipeline | None = None
        self._task: asyncio.Task | None = None
        self._done = asyncio.Event()
        self._caller: str | None = request.caller_identity
        self._greeted = False
        self._limit_task: asyncio.Future | None = None
        self._end_asked_at: float | None = None
        self._ending_deadline: asyncio.TimerHandle | None = None
        self._subscribed = asyncio.Event()  # someone (the caller) subscribed to the agent's audio track
        # What the checkpoint carries beside the conversation; a recovered session takes them from it.
        self.metadata: dict[str, Any] = dict(request.metadata)
        self.eval_mode = request.eval_mode
        self.ledger = ToolLedger(request.session_id)
        self.checkpoint: RoomCheckpoint | None = None
        self.restored: CallCheckpoint | None = None
        self._restore_tried = False
        self.final_report: WorkerCallReport | None = None  # frozen as the session ends (call_report.py)
        self._trace_parent = otel_context.get_current()  # the dispatch's span (control_api): the call's trace
        self._log = log.bind(session_id=request.session_id, tenant=request.tenant, agent=request.agent,
                             region=request.region, room=request.room)

    @property
    def ended(self) -> bool:
        return self.state.phase == "ended"

    def start(self) -> None:
        self._task = asyncio.create_task(self._traced_run(), name=f"session-{self.request.session_id}")

    async def _traced_run(self) -> None:
        """The whole session as one span, a child of the dispatch that started it (the control API's span, itself
        a child of the gateway's): Pipecat's conversation span opens inside it (pipeline_builder), so the call is
        one trace from the tenant's request to the agent's last answer, and every line logged meanwhile carries it."""
        with TRACER.start_as_current_span("voxfleet.session", context=self._trace_parent, attributes={
                "voxfleet.session_id": self.request.session_id, "voxfleet.tenant": self.request.tenant,
                "voxfleet.agent": self.request.agent, "voxfleet.region": self.request.region,
                "voxfleet.room": self.request.room, "voxfleet.recovery": self.request.recovery}) as span:
            try:
                await self._run()
            finally:
                if self._pipeline is not None:
                    close_conversation_trace(self._pipeline)  # a call ended before its pipeline ran, too
                span.set_attribute("voxfleet.end_reason", self.state.end_reason or self._end_reason or "error")

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def end(self, reason: EndReason) -> None:
        """Ask the session to end (idempotent; the first reason wins). Returns once it has asked, not ended."""
        if self._end_reason is None:
            self._end_reason = reason
        if self._end_asked_at is None and self._task is not None and not self._task.done():
            self._end_asked_at = time.monotonic()
            self._ending_deadline = asyncio.get_running_loop().call_later(ENDING_DEADLINE_S, self._end_overdue)
        if self._runner is not None:
            await self._runner.cancel(reason)
        elif self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        # This task and every task it starts (Pipecat's processors, its loguru lines) log with the call's ids.
        bind_call(session_id=self.request.session_id, tenant=self.request.tenant, agent=self.request.agent)
        resources = self._resources
        spec = resources.config.spec
        limit: asyncio.TimerHandle | None = None
        try:
            self.checkpoint = self._room_checkpoint()
            self._pipeline = build_session_pipeline(
                self.request, providers=resources.providers, models=resources.models,
                tool_runner=resources.tool_runner, labels=resources.labels, tracing=resources.tracing,
                ledger=self.ledger)
            self._wire_events(self._pipeline)
            self._runner = WorkerRunner(handle_sigint=False, handle_sigterm=False, check_dangling_tasks=False)
            await self._runner.add_workers(self._pipeline.worker)
            loop = asyncio.get_running_loop()
            limit = loop.call_later(spec.limits.max_session_seconds, self._reached_max_duration)
            if self._end_reason is not None:  # ended (DELETE, drain) while it was being built
                return
            await self._runner.run()
            if self._end_reason is None:
                self._end_reason = "error"  # the pipeline stopped by itself: a processor gave up
        except asyncio.CancelledError:
            self._end_reason = self._end_reason or "deleted"
        except Exception as error:
            self._end_reason = "error"
            self._log.error("session failed", error=f"{type(error).__name__}: {error}"[:500])
        finally:
            if limit is not None:
                limit.cancel()
            await self._finish()

    # -- the call's checkpoint ------------------------------------------------------------------------------

    def _room_checkpoint(self) -> RoomCheckpoint | None:
        try:
            key = checkpoint_key(self._resources.platform.load_worker_token(), self.request.session_id)
        except (RuntimeError, OSError, ValueError) as error:
            self._log.warning("no worker token to seal checkpoints with: the call is not checkpointed",
                              error=type(error).__name__)
            return None
        checkpoint = RoomCheckpoint(livekit_url=self.request.livekit_url, token=self.request.livekit_token,
                                    room=self.request.room, session_id=self.request.session_id, key=key,
                                    snapshot=self._snapshot, room_metadata=self._room_metadata)
        self.ledger = ToolLedger(self.request.session_id, persist_now=checkpoint.write_now,
                                 persist_soon=checkpoint.write_soon)
        return checkpoint

    def _room_metadata(self) -> str | None:
        try:
            return self._pipeline.transport._client.room.metadata if self._pipeline else None  # noqa: SLF001
        except Exception:  # noqa: BLE001 - not connected (yet, or any more)
            return None

    def _snapshot(self) -> CallCheckpoint:
        messages = self._pipeline.context.get_messages() if self._pipeline else []
        skip = next((i for i, m in enumerate(messages) if not (isinstance(m, dict) and m.get("role") == "system")),
                    len(messages))  # the spec's system prompt: the next worker has it from its own spec
        return CallCheckpoint(session_id=self.request.session_id, caller=self._caller, metadata=self.metadata,
                              eval_mode=self.eval_mode, messages=list(messages[skip:]),
                              tool_calls=list(self.ledger.records), calls_made=self.ledger.calls_made)

    def _checkpoint_soon(self) -> None:
        if self.checkpoint is not None and self.state.phase == "active":
            self.checkpoint.write_soon()

    def _restore(self) -> None:
        """A recovered session takes the call over from its checkpoint (once, as soon as it is in the room)."""
        if self._restore_tried or not self.request.recovery or self.checkpoint is None or self._pipeline is None:
            return
        self._restore_tried = True
        checkpoint = self.checkpoint.read(self._room_metadata())
        if checkpoint is None:
            self._log.info("recovered without a checkpoint: the conversation starts over")
            return
        self.restored = checkpoint
        self.ledger.restore(checkpoint)
        self.metadata = self.metadata or dict(checkpoint.metadata)
        if self._caller is None and checkpoint.caller:
            self._caller = checkpoint.caller
        if checkpoint.eval_mode and not self.eval_mode:  # the gateway lost it: record the rest of the call
            self.eval_mode = True
            spec = self._resources.config.spec
            recorder = recorder_for(self.request.model_copy(update={"eval_mode": True}), spec,
                                    self._pipeline.observer)
            if recorder is not None:
                self._pipeline.worker.add_observer(recorder)
        context = self._pipeline.context
        system = [m for m in context.get_messages() if isinstance(m, dict) and m.get("role") == "system"]
        context.set_messages(system + self.ledger.repair_messages(checkpoint.messages))
        self._log.info("conversation restored from the call's checkpoint", messages=len(checkpoint.messages),
                       tool_calls=len(checkpoint.tool_calls), unconfirmed=len(self.ledger.unconfirmed()),
                       sequence=checkpoint.sequence)

    def _end_overdue(self) -> None:
        if self._task is not None and not self._task.done():
            self._log.warning("session teardown overdue, cancelling it", reason=self._end_reason,
                              seconds=ENDING_DEADLINE_S)
            self._task.cancel()

    def _reached_max_duration(self) -> None:
        self._limit_task = asyncio.ensure_future(self.end("max-duration"))  # referenced until it has run

    def _wire_events(self, pipeline: SessionPipeline) -> None:
        transport, worker = pipeline.transport, pipeline.worker

        @transport.event_handler("on_connected")
        async def on_connected(_transport):
            self.state.phase = "active"
            self._restore()  # before any turn: the first answer already knows the conversation
            transport._client.room.on("local_track_subscribed", lambda _track: self._subscribed.set())
            self._log.info("joined room", identity=self.request.agent_identity,
                           since_dispatch_ms=round((time.monotonic() - self._started) * 1000, 1))

        @transport.event_handler("on_participant_connected")
        async def on_participant(_transport, participant_id: str):
            # Another agent (a lost worker's participant lingering in a recovered room) is never the caller.
            if self._caller is None and participant_id != self.request.agent_identity \
                    and not room_names.is_agent_identity(participant_id):
                self._caller = participant_id
            if participant_id == self._caller and not self._greeted:
                self._greeted = True
                worker.create_task(self._greet(), "greeting")

        aggregators = pipeline.services["aggregators"]

        @aggregators.user().event_handler("on_user_turn_stopped")
        async def on_caller_turn(_aggregator, _strategy, _message):
            self._checkpoint_soon()

        @aggregators.assistant().event_handler("on_assistant_turn_stopped")
        async def on_agent_turn(_aggregator, _message):
            self._checkpoint_soon()

        if self._resources.config.spec.observability.record_transcripts:
            @aggregators.assistant().event_handler("on_assistant_turn_stopped")
            async def on_agent_said(_aggregator, message):
                if message.content:
                    pipeline.observer.note_agent_text(message.content)

        @transport.event_handler("on_participant_disconnected")
        async def on_left(_transport, participant_id: str):
            if participant_id == self._caller:
                await self.end("caller-left")

        @transport.event_handler("on_disconnected")
        async def on_disconnected(_transport):
            await self.end("room-finished")

        @worker.event_handler("on_idle_timeout")
        async def on_idle(_worker):
            await self.end("idle")

        @worker.event_handler("on_pipeline_timeout")
        async def on_blocked(_worker, frame):
            self._log.warning("pipeline did not pass a frame on in time", frame=type(frame).__name__,
                              reason=self._end_reason)

        @worker.event_handler("on_pipeline_error")
        async def on_error(_worker, frame):
            # An uncaught exception inside a processor is a crash of this call: end it (only it).
            if frame.fatal or frame.exception is not None and not isinstance(frame.exception, asyncio.TimeoutError):
                self._log.error("pipeline error ends the session", error=str(frame.error)[:500],
                                processor=str(frame.processor))
                await self.end("error")

    async def _greet(self) -> None:
        # Audio sent before the caller has subscribed to our track is lost; wait for it (bounded).
        try:
            await asyncio.wait_for(self._subscribed.wait(), GREETING_WAIT_S)
        except TimeoutError:
            pass
        spec = self._resources.config.spec
        self._restore()
        line = self._resources.settings.recovery_line if self.request.recovery else spec.greeting
        if self.request.recovery and self.ledger.unconfirmed():  # a tool was running when the call was cut off
            line = f"{line} {UNCONFIRMED_LINE}".strip()
        if line and self._pipeline is not None:
            await self._pipeline.worker.queue_frames([TTSSpeakFrame(line)])
            self._log.info("greeting", recovery=self.request.recovery, caller_subscribed=self._subscribed.is_set(),
                           since_dispatch_ms=round((time.monotonic() - self._started) * 1000, 1))

    async def _finish(self) -> None:
        if self._ending_deadline is not None:  # from here on the session ends by itself
            self._ending_deadline.cancel()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner.cancel(self._end_reason), CANCEL_TIMEOUT_S)
            except Exception as error:
                self._log.warning("session teardown did not finish cleanly", error=str(error)[:300])
        if self.checkpoint is not None:  # the call is over: nothing left to continue
            await self.checkpoint.aclose()
        reason: EndReason = self._end_reason or "error"
        duration = time.monotonic() - self._started
        self.state.phase = "ended"
        self.state.ended_at = datetime.now(UTC)
        self.state.end_reason = reason
        labels = self._resources.labels
        metrics.SESSIONS.labels(**labels, end_reason=reason).inc()
        metrics.SESSION_DURATION.labels(**labels).observe(duration)
        self._record_usage(duration, reason)
        self.final_report = self.report()
        self._done.set()
        self._on_ended(self)

    def report(self) -> WorkerCallReport:
        """The end-of-call report (frozen once the session has ended; as far as it went before that)."""
        if self.final_report is not None:
            return self.final_report
        pipeline = self._pipeline
        return build_report(session_id=self.request.session_id, worker=self._resources.settings.pod_name,
                            state=self.state, started_monotonic=self._started,
                            observer=pipeline.observer if pipeline else None,
                            tool_calls=pipeline.tool_calls if pipeline else None,
                            record_transcripts=self._resources.config.spec.observability.record_transcripts)

    def _record_usage(self, duration: float, reason: str) -> None:
        observer = self._pipeline.observer if self._pipeline else None
        pipeline = self._resources.config.spec.pipeline
        labels = self._resources.labels
        record: dict[str, Any] = {"duration_seconds": round(duration, 3), "end_reason": reason,
                                  "teardown_ms": round((time.monotonic() - (self._end_asked_at or time.monotonic()))
                                                       * 1000, 1),
                                  "stt": pipeline.stt.provider, "llm": pipeline.llm.provider,
                                  "tts": pipeline.tts.provider, "restored": self.restored is not None}
        if self.checkpoint is not None:
            record.update(self.checkpoint.figures.summary())
        if observer is not None:
            observer.call_ended(reason)  # judges the call's last turn (turn outcomes, docs/operations.md)
            usage = observer.usage
            cost = self._resources.settings.prices.cost(
                stt=pipeline.stt.provider, llm=pipeline.llm.provider, tts=pipeline.tts.provider,
                stt_seconds=usage.stt_seconds, llm_input_tokens=usage.llm_input_tokens,
                llm_output_tokens=usage.llm_output_tokens, tts_characters=usage.tts_characters)
            metrics.STT_SECONDS.labels(**labels).inc(usage.stt_seconds)
            metrics.LLM_INPUT_TOKENS.labels(**labels).inc(usage.llm_input_tokens)
            metrics.LLM_OUTPUT_TOKENS.labels(**labels).inc(usage.llm_output_tokens)
            metrics.TTS_CHARACTERS.labels(**labels).inc(usage.tts_characters)
            metrics.COST.labels(**labels).inc(cost)
            figures = observer.figures
            record.update(stt_seconds=round(usage.stt_seconds, 3), llm_input_tokens=usage.llm_input_tokens,
                          llm_output_tokens=usage.llm_output_tokens, tts_characters=usage.tts_characters,
                          cost=round(cost, 6), turns=figures.turns, interruptions=figures.interruptions,
                          false_interruptions=figures.false_interruptions, turn_outcomes=figures.turn_outcomes,
                          ttfa_ms=[round(v * 1000, 1) for v in figures.ttfa])
            if self._resources.config.spec.observability.record_transcripts:
                record["transcript"] = observer.transcript
        self._log.info("session usage", **record)
