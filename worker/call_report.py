"""The end-of-call report a worker keeps of each session it ran, for the gateway to fetch and store.

The figures come from the session's observers: the ConversationObserver's per-turn log (the same TTFA its
histogram records, interruptions, turn outcomes), its provider usage (Pipecat usage metrics: the offline
providers report theirs too - PocketSphinx the audio it decoded, the scripted LLM its prompt and reply counted
in words, eSpeak the characters it spoke), its transcript (only when the agent records transcripts), and the
tool calls timed here. The report is frozen when the session ends and stays with the ended session (the worker
keeps `endedSessionsKept` of them), so the gateway can fetch it after the call:

    GET /v1/sessions/{id}/report   (worker token) -> WorkerCallReport; 404 session_not_found

Why the gateway pulls instead of the worker pushing: the gateway already calls workers with their namespace's
token, and asks only the worker it placed (or recovered) the session on, so a worker never addresses a record
at all - it cannot write another tenant's, and it is never asked for a price (docs/tenant-product.md, S2).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pipecat.frames.frames import FunctionCallCancelFrame, FunctionCallInProgressFrame, FunctionCallResultFrame
from pipecat.observers.base_observer import BaseObserver, FramePushed

from voxfleet.api.call_report import (
    MAX_LATENCY_MS,
    MAX_REPORT_TOOL_CALLS,
    MAX_REPORT_TURNS,
    MAX_TRANSCRIPT_LINES,
    MAX_TRANSCRIPT_TEXT_CHARS,
    MAX_USAGE_CHARACTERS,
    MAX_USAGE_MS,
    MAX_USAGE_TOKENS,
    CallUsage,
    ReportToolCall,
    ReportTurn,
    TranscriptLine,
    WorkerCallReport,
)
from voxfleet.api.wire import ErrorBody


class ToolCallTimes(BaseObserver):
    """Each tool call of a session once, with its status and latency (from the LLM's call to its result)."""

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self._calls: dict[str, dict[str, Any]] = {}
        self.truncated = False

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        if isinstance(frame, FunctionCallInProgressFrame):
            # broadcast_frame sends one frame each way: the first one seen counts.
            if frame.tool_call_id in self._calls:
                return
            if len(self._calls) >= MAX_REPORT_TOOL_CALLS:
                self.truncated = True
                return
            self._calls[frame.tool_call_id] = {"name": str(frame.function_name)[:64] or "tool",
                                               "started": time.monotonic(), "status": "unfinished"}
        elif isinstance(frame, FunctionCallResultFrame):
            self._ended(frame.tool_call_id, _status(frame.result, getattr(frame, "error", None)))
        elif isinstance(frame, FunctionCallCancelFrame):
            self._ended(frame.tool_call_id, "cancelled")

    def _ended(self, call_id: str, status: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and call["status"] == "unfinished":
            call["status"] = status
            call["latency_ms"] = min(MAX_LATENCY_MS, round((time.monotonic() - call["started"]) * 1000))

    def calls(self) -> list[ReportToolCall]:
        return [ReportToolCall(name=c["name"], status=c["status"], latency_ms=c.get("latency_ms"))
                for c in self._calls.values()]


def _status(result: Any, error: Any) -> str:
    """ok/error from the tool runner's payload (voxfleet.worker.tool_calls.result_payload)."""
    if error or isinstance(result, dict) and result.get("ok") is False:
        return "error"
    return "ok"


def build_report(*, session_id: str, worker: str, state: Any, started_monotonic: float, observer: Any,
                 tool_calls: ToolCallTimes | None, record_transcripts: bool) -> WorkerCallReport:
    """The report of one session as far as it went. ``state``: its SessionState; ``observer``: its
    ConversationObserver (None when the pipeline was never built); ``started_monotonic``: the session's start on
    the monotonic clock the observers' times use."""

    def since_start(monotonic: float) -> int:
        return max(0, min(MAX_USAGE_MS, round((monotonic - started_monotonic) * 1000)))

    turns: list[ReportTurn] = []
    usage = CallUsage()
    transcript: list[TranscriptLine] | None = [] if record_transcripts else None
    interruptions = false_interruptions = 0
    truncated = bool(tool_calls and tool_calls.truncated)
    if observer is not None:
        for index, entry in enumerate(observer.turn_log[:MAX_REPORT_TURNS]):
            turns.append(ReportTurn(index=index, at_ms=since_start(entry.ended_at), interrupted=entry.interrupted,
                                    outcome=entry.outcome,
                                    ttfa_ms=None if entry.ttfa is None else
                                    max(0, min(MAX_LATENCY_MS, round(entry.ttfa * 1000)))))
        truncated = truncated or observer.turns_truncated or len(observer.turn_log) > MAX_REPORT_TURNS
        figures = observer.figures
        interruptions, false_interruptions = figures.interruptions, figures.false_interruptions
        used = observer.usage
        usage = CallUsage(stt_ms=min(MAX_USAGE_MS, round(used.stt_seconds * 1000)),
                          llm_prompt_tokens=min(MAX_USAGE_TOKENS, used.llm_input_tokens),
                          llm_completion_tokens=min(MAX_USAGE_TOKENS, used.llm_output_tokens),
                          tts_characters=min(MAX_USAGE_CHARACTERS, used.tts_characters))
        if transcript is not None:
            for line in observer.transcript[:MAX_TRANSCRIPT_LINES]:
                transcript.append(TranscriptLine(role="caller" if line["who"] == "caller" else "agent",
                                                 text=str(line["text"])[:MAX_TRANSCRIPT_TEXT_CHARS],
                                                 at_ms=since_start(line.get("at", started_monotonic))))
    ended = state.phase == "ended"
    return WorkerCallReport(
        session_id=session_id, worker=worker[:253] or "unknown", complete=ended, started_at=state.started_at,
        ended_at=state.ended_at if ended else None, end_reason=state.end_reason if ended else None,
        recovered=bool(state.recovery), turns=turns, interruptions=min(interruptions, MAX_REPORT_TURNS * 10),
        false_interruptions=min(false_interruptions, MAX_REPORT_TURNS * 10),
        tool_calls=tool_calls.calls() if tool_calls else [], usage=usage, transcript=transcript,
        truncated=truncated)


def report_routes(reports: Callable[[str], WorkerCallReport | None], require_token: Callable[..., None]
                  ) -> APIRouter:
    """`GET /v1/sessions/{id}/report` on the worker control API (``reports``: the worker's report lookup)."""
    router = APIRouter()

    @router.get("/v1/sessions/{session_id}/report", dependencies=[Depends(require_token)])
    async def session_report(session_id: str):
        report = reports(session_id)
        if report is None:
            return JSONResponse(ErrorBody(code="session_not_found",
                                          message=f"no session {session_id[:200]!r} on this worker").to_wire(),
                                status_code=404)
        return JSONResponse(report.to_wire())

    return router

