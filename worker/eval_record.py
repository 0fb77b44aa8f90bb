"""Eval mode: what a session said, heard and called, kept for the tenant's eval runner (`voxfleet eval`).

Only sessions dispatched with `eval_mode` of agents whose spec records transcripts get a recorder; others are
remembered as "not recorded" so the control API can say why there is nothing. The recorder is an observer of
the session's pipeline (it changes nothing in it) and keeps bounded lists (voxfleet.api.eval_record):

- caller lines: final transcripts from speech-to-text (what the agent understood);
- agent lines: the text the TTS service marks as spoken (it is queued behind its audio, so text cut off by a
  barge-in is not in it);
- tool calls: name, arguments and outcome, from Pipecat's function-call frames;
- interruptions: when the agent stopped speaking for the caller;
- the worker's own TTFA of each answer (the figures its TTFA histogram records), with when the answer began.

    GET /v1/sessions/{id}/eval   (worker token) -> SessionEvalRecord; 404 not_an_eval_session,
                                                   403 transcripts_disabled
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FunctionCallCancelFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    InterruptionFrame,
    TranscriptionFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxfleet.api.eval_record import (
    MAX_EVAL_LINES,
    MAX_EVAL_TEXT_CHARS,
    MAX_EVAL_TOOL_CALLS,
    EvalLatency,
    EvalToolCall,
    EvalTranscriptLine,
    SessionEvalRecord,
)
from voxfleet.api.voiceagent import MAX_TOOL_ARGUMENT_BYTES, VoiceAgentSpec
from voxfleet.api.wire import DispatchRequest, ErrorBody
from voxfleet.worker.telemetry.conversation_observer import _pushed_at as pushed_monotonic

MAX_RECORDED_SESSIONS = 200  # a worker serves a few calls at once; runners fetch right after a call ends
NOT_RECORDED = "not-recorded"  # eval mode was asked for, but the agent's spec keeps no transcripts


class EvalRecorder(BaseObserver):
    def __init__(self, session_id: str, conversation: Any = None):
        super().__init__(observe_every_push=False)
        self.session_id = session_id
        # The session's ConversationObserver: its TTFA figures are the ones the worker's histogram records.
        self._conversation = conversation
        self._answers: list[float] = []  # when each timed answer began: a bot start after a caller turn ended
        self._caller_turn_ended = False
        self._caller_speaking = False
        self._at = time.time()
        self.transcript: list[EvalTranscriptLine] = []
        self.tool_calls: dict[str, EvalToolCall] = {}
        self.interruptions: list[float] = []
        self.truncated = False
        self._bot_speaking = False
        # Barge-in pauses the agent at the caller's voice and cancels the reply only once words confirm it
        # (worker/barge_in.py): by the InterruptionFrame the agent is already quiet, yet it was talking over.
        self._paused_for_caller: float | None = None  # when the caller's voice paused the agent

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        downstream = data.direction == FrameDirection.DOWNSTREAM
        self._at = _pushed_at(data)
        if isinstance(frame, TTSTextFrame) and downstream:
            self._line("agent", frame.text)
        elif isinstance(frame, TranscriptionFrame) and downstream:
            self._line("caller", frame.text)
        elif isinstance(frame, VADUserStartedSpeakingFrame) and self._bot_speaking:
            if self._paused_for_caller is None:  # (an observer sees each hop of the frame: the first one counts)
                self._paused_for_caller = self._at
        elif isinstance(frame, BotStartedSpeakingFrame) and downstream:
            self._bot_speaking = True
            self._paused_for_caller = None  # it played on: that pause was no interruption
            if self._caller_turn_ended:  # the same rule ConversationObserver times a TTFA by
                self._caller_turn_ended = False
                self._bounded(self._answers, self._at)
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._caller_speaking = True
        elif isinstance(frame, UserStoppedSpeakingFrame) and self._caller_speaking:
            self._caller_speaking = False  # a stop without a start ends no turn (ConversationObserver's rule)
            self._caller_turn_ended = True
        elif isinstance(frame, BotStoppedSpeakingFrame) and downstream:
            self._bot_speaking = False
        elif isinstance(frame, InterruptionFrame) and downstream and (self._bot_speaking
                                                                      or self._paused_for_caller is not None):
            # The agent stopped for the caller when it paused, not when the words confirmed it.
            at = self._paused_for_caller if self._paused_for_caller is not None else self._at
            self._paused_for_caller = None
            self._bounded(self.interruptions, at)
        elif isinstance(frame, FunctionCallInProgressFrame):
            self._call_started(frame)
        elif isinstance(frame, FunctionCallResultFrame):
            self._call_ended(frame.tool_call_id, _outcome(frame.result, frame.error))
        elif isinstance(frame, FunctionCallCancelFrame):
            self._call_ended(frame.tool_call_id, ("cancelled", None))

    def record(self, *, complete: bool) -> SessionEvalRecord:
        ttfas = list(getattr(getattr(self._conversation, "figures", None), "ttfa", []))
        return SessionEvalRecord(session_id=self.session_id, complete=complete, truncated=self.truncated,
                                 transcript=list(self.transcript), tool_calls=list(self.tool_calls.values()),
                                 interruptions=list(self.interruptions),
                                 agent_ttfa=[EvalLatency(at=at, seconds=round(seconds, 4))
                                             for at, seconds in zip(self._answers, ttfas)])

    def _line(self, role: str, text: str) -> None:
        text = " ".join(text.split())[:MAX_EVAL_TEXT_CHARS]
        if text:
            self._bounded(self.transcript, EvalTranscriptLine(role=role, text=text, at=self._at))

    def _call_started(self, frame: FunctionCallInProgressFrame) -> None:
        # broadcast_frame sends one frame each way: the first one seen counts.
        if frame.tool_call_id in self.tool_calls:
            return
        if len(self.tool_calls) >= MAX_EVAL_TOOL_CALLS:
            self.truncated = True
            return
        self.tool_calls[frame.tool_call_id] = EvalToolCall(
            name=frame.function_name[:64], call_id=str(frame.tool_call_id)[:128],
            arguments=_bounded_arguments(frame.arguments), started_at=self._at)

    def _call_ended(self, call_id: str, outcome: tuple[str, str | None]) -> None:
        call = self.tool_calls.get(call_id)
        if call is not None and call.ended_at is None:
            call.outcome, call.error = outcome  # type: ignore[assignment]
            call.ended_at = self._at

    def _bounded(self, items: list, item: Any) -> None:
        if len(items) >= MAX_EVAL_LINES:
            self.truncated = True
            return
        items.append(item)


_recorders: OrderedDict[str, EvalRecorder | str] = OrderedDict()


def recorder_for(request: DispatchRequest, spec: VoiceAgentSpec, conversation: Any = None) -> EvalRecorder | None:
    """A recorder for an eval-mode session of an agent that records transcripts; None otherwise. ``conversation``:
    the session's ConversationObserver, whose TTFA figures the record reports per answer."""
    if not request.eval_mode:
        return None
    recorder: EvalRecorder | str = (EvalRecorder(request.session_id, conversation)
                                    if spec.observability.record_transcripts else NOT_RECORDED)
    _recorders[request.session_id] = recorder
    while len(_recorders) > MAX_RECORDED_SESSIONS:
        _recorders.popitem(last=False)
    return recorder if isinstance(recorder, EvalRecorder) else None


def eval_routes(worker: Any, require_token: Callable[..., None]) -> APIRouter:
    """`GET /v1/sessions/{id}/eval` on the worker control API (``worker``: the control API's WorkerControl)."""
    router = APIRouter()

    @router.get("/v1/sessions/{session_id}/eval", dependencies=[Depends(require_token)])
    async def session_eval(session_id: str):
        state = worker.session(session_id)
        if state is None:
            return _error(404, "session_not_found", f"no session {session_id[:200]!r} on this worker")
        recorder = _recorders.get(session_id)
        if recorder is None:
            return _error(404, "not_an_eval_session", "this session was not started in eval mode; start it with"
                                                      " evalMode: true to get its tool calls and transcript")
        if not isinstance(recorder, EvalRecorder):
            return _error(403, "transcripts_disabled", "the agent's spec does not record transcripts"
                                                       " (spec.observability.recordTranscripts is false), so eval"
                                                       " results are not kept")
        return JSONResponse(recorder.record(complete=state.phase == "ended").to_wire())

    return router


def _pushed_at(data: FramePushed) -> float:
    """Epoch seconds when the frame was pushed (observers run from a queue, so a busy worker sees frames late;
    the conversation observer's push time corrects for that, and is what its TTFA figures use)."""
    return time.time() - (time.monotonic() - pushed_monotonic(data))


def _outcome(result: Any, error: str | None) -> tuple[str, str | None]:
    """ok/error from the tool runner's payload (voxfleet.worker.tool_calls.result_payload)."""
    if error:
        return "error", str(error)[:300]
    if isinstance(result, dict) and result.get("ok") is False:
        return "error", str(result.get("error") or "the tool failed")[:300]
    return "ok", None


def _bounded_arguments(arguments: Any) -> dict[str, Any]:
    import json

    if not isinstance(arguments, dict):
        return {}
    if len(json.dumps(arguments, default=str)) > MAX_TOOL_ARGUMENT_BYTES:
        return {"_truncated": True}
    return json.loads(json.dumps(arguments, default=str))


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(ErrorBody(code=code, message=message).to_wire(), status_code=status)
