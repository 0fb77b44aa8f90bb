"""The worker's eval recorder, fed the Pipecat frames a session pipeline pushes: who said what, tool calls once
each with their outcome, interruptions only while the agent talks, the worker's own TTFA per answer (the same
figures the session's ConversationObserver puts in the TTFA histogram), and its bounds."""

from __future__ import annotations

import time
from types import SimpleNamespace

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
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxfleet.api.eval_record import MAX_EVAL_LINES, SessionEvalRecord
from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.api.wire import DispatchRequest
from voxfleet.worker import eval_record
from voxfleet.worker.eval_record import EvalRecorder, recorder_for
from voxfleet.worker.telemetry.conversation_observer import ConversationObserver

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM


async def push(observers, frame, direction=DOWN) -> None:
    for observer in observers:
        await observer.on_push_frame(FramePushed(source=None, destination=None, frame=frame, direction=direction,
                                                 timestamp=0))


def _request(session_id: str, eval_mode: bool) -> DispatchRequest:
    return DispatchRequest(session_id=session_id, tenant="t", agent="a", region="us-east", room="r",
                           livekit_url="ws://127.0.0.1:1", livekit_token="x", agent_identity="agent",
                           eval_mode=eval_mode)


def _spec(record: bool) -> VoiceAgentSpec:
    return VoiceAgentSpec.model_validate({"regions": [{"name": "us-east"}],
                                          "observability": {"recordTranscripts": record}})


async def test_lines_calls_and_interruptions_are_recorded_once_each():
    recorder = EvalRecorder("sess-12345678")
    observers = [recorder]
    await push(observers, TTSTextFrame("Hello there.", text_type="sentence"))
    await push(observers, TTSTextFrame("ignored upstream", text_type="sentence"), UP)
    await push(observers, TranscriptionFrame("where is my order 1234", "caller", "now"))
    call = dict(function_name="lookup_order", tool_call_id="call-1", arguments={"order_id": "1234"})
    await push(observers, FunctionCallInProgressFrame(**call), DOWN)
    await push(observers, FunctionCallInProgressFrame(**call), UP)  # broadcast: the same call both ways
    await push(observers, FunctionCallResultFrame(**call, result={"ok": False, "error": "the tool timed out"}))
    await push(observers, FunctionCallInProgressFrame(function_name="slow", tool_call_id="call-2", arguments={}))
    await push(observers, FunctionCallCancelFrame(function_name="slow", tool_call_id="call-2"))
    await push(observers, InterruptionFrame())  # the agent is not speaking: not an interruption of it
    await push(observers, BotStartedSpeakingFrame())
    await push(observers, InterruptionFrame())
    await push(observers, BotStoppedSpeakingFrame())

    record = SessionEvalRecord.model_validate(recorder.record(complete=True).to_wire())
    assert [(line.role, line.text) for line in record.transcript] == [
        ("agent", "Hello there."), ("caller", "where is my order 1234")]
    assert [(c.name, c.arguments, c.outcome, c.error) for c in record.tool_calls] == [
        ("lookup_order", {"order_id": "1234"}, "error", "the tool timed out"), ("slow", {}, "cancelled", None)]
    assert all(c.ended_at >= c.started_at for c in record.tool_calls)
    assert len(record.interruptions) == 1 and record.complete


async def test_each_answers_ttfa_is_the_conversation_observers():
    vad = SimpleNamespace(last_voiced_at=0.0)
    conversation = ConversationObserver(labels={"tenant": "t", "agent": "eval-recorder", "region": "us-east"},
                                        vad=vad, stt_name="stt", llm_name="llm", tts_name="tts",
                                        record_transcripts=True)
    recorder = EvalRecorder("sess-12345678", conversation)
    observers = [conversation, recorder]
    await push(observers, BotStartedSpeakingFrame())  # the greeting: no caller turn before it, so not timed
    await push(observers, BotStoppedSpeakingFrame())
    for _ in range(2):
        await push(observers, UserStartedSpeakingFrame())
        vad.last_voiced_at = time.monotonic()
        await push(observers, UserStoppedSpeakingFrame())
        await push(observers, BotStartedSpeakingFrame())
        await push(observers, BotStoppedSpeakingFrame())
    record = recorder.record(complete=False)
    assert [round(a.seconds, 4) for a in record.agent_ttfa] == [round(v, 4) for v in conversation.figures.ttfa]
    assert len(record.agent_ttfa) == 2 and record.agent_ttfa[0].at <= record.agent_ttfa[1].at


async def test_records_are_bounded():
    recorder = EvalRecorder("sess-12345678")
    for n in range(MAX_EVAL_LINES + 20):
        await push([recorder], TranscriptionFrame(f"line {n} " + "x" * 2000, "caller", "now"))
    record = recorder.record(complete=False)
    assert len(record.transcript) == MAX_EVAL_LINES and record.truncated
    assert all(len(line.text) <= 1000 for line in record.transcript)


def test_only_eval_sessions_of_agents_that_keep_transcripts_are_recorded():
    assert recorder_for(_request("sess-plain-0001", False), _spec(True)) is None
    assert "sess-plain-0001" not in eval_record._recorders
    assert recorder_for(_request("sess-unrecorded-1", True), _spec(False)) is None
    assert eval_record._recorders["sess-unrecorded-1"] == eval_record.NOT_RECORDED
    assert isinstance(recorder_for(_request("sess-recorded-01", True), _spec(True)), EvalRecorder)
