"""The worker's end-of-call report (voxfleet.worker.call_report), built from the Pipecat frames a session pipeline
pushes through its real observers: one entry per caller turn with the TTFA the histogram recorded for its answer,
whether the caller barged in on that answer, its judged outcome; tool calls once each with status and latency;
provider usage from Pipecat's usage metrics; the transcript only when the agent records transcripts; bounds.
The realtime acceptance (a real call, the report against what the caller heard) is
tests/gateway/test_call_report_e2e.py; the control API endpoint is checked on a real worker process at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    FunctionCallInProgressFrame,
    FunctionCallResultFrame,
    MetricsFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import (
    LLMTokenUsage,
    LLMUsageMetricsData,
    STTUsage,
    STTUsageMetricsData,
    TTSUsageMetricsData,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxfleet.api.call_report import MAX_REPORT_TURNS, WorkerCallReport
from voxfleet.api.wire import SessionState
from voxfleet.worker.call_report import ToolCallTimes, build_report
from voxfleet.worker.telemetry.conversation_observer import ConversationObserver

DOWN, UP = FrameDirection.DOWNSTREAM, FrameDirection.UPSTREAM
LABELS = {"tenant": "t", "agent": "call-report", "region": "us-east"}


async def push(observers, frame, direction=DOWN) -> None:
    for observer in observers:
        await observer.on_push_frame(FramePushed(source=None, destination=None, frame=frame, direction=direction,
                                                 timestamp=0))


def _observer(record: bool = True):
    vad = SimpleNamespace(last_voiced_at=0.0)
    return vad, ConversationObserver(labels=LABELS, vad=vad, stt_name="stt", llm_name="llm", tts_name="tts",
                                     record_transcripts=record)


async def _caller_turn(observers, vad, words: str, *, answer_after: float | None) -> None:
    await push(observers, UserStartedSpeakingFrame())
    await push(observers, TranscriptionFrame(words, "caller", "now"))
    vad.last_voiced_at = time.monotonic()
    await push(observers, UserStoppedSpeakingFrame())
    if answer_after is not None:
        await asyncio.sleep(answer_after)
        await push(observers, BotStartedSpeakingFrame())


def _state(phase: str = "ended", reason: str | None = "caller-left") -> SessionState:
    now = datetime.now(UTC)
    return SessionState(session_id="sess-12345678", tenant="t", agent="a", region="us-east", room="r", phase=phase,
                        started_at=now, ended_at=now if phase == "ended" else None,
                        end_reason=reason if phase == "ended" else None)


async def test_each_caller_turn_has_its_answers_ttfa_its_barge_in_and_its_outcome():
    started = time.monotonic()
    vad, conversation = _observer()
    tools = ToolCallTimes()
    observers = [conversation, tools]
    await push(observers, BotStartedSpeakingFrame())  # the greeting: no caller turn before it
    await push(observers, BotStoppedSpeakingFrame())
    await _caller_turn(observers, vad, "what are your opening hours", answer_after=0.05)
    # The caller barges in on that answer with other words: turn 0 was answered and interrupted.
    await _caller_turn(observers, vad, "and where is the shop", answer_after=None)
    call = dict(function_name="find_shop", tool_call_id="call-1", arguments={})
    await push(observers, FunctionCallInProgressFrame(**call), DOWN)
    await push(observers, FunctionCallInProgressFrame(**call), UP)  # broadcast both ways: one call
    await asyncio.sleep(0.02)
    await push(observers, FunctionCallResultFrame(**call, result={"ok": True}), DOWN)
    await push(observers, BotStartedSpeakingFrame())
    await push(observers, BotStoppedSpeakingFrame())
    conversation.call_ended("caller-left")  # judges the last turn: its answer finished

    report = build_report(session_id="sess-12345678", worker="pod-1", state=_state(), started_monotonic=started,
                          observer=conversation, tool_calls=tools, record_transcripts=True)
    print(f"turns {[t.to_wire() for t in report.turns]} tool calls {[c.to_wire() for c in report.tool_calls]}")
    assert [t.index for t in report.turns] == [0, 1]
    assert [round(t.ttfa_ms) for t in report.turns if t.ttfa_ms is not None] == [
        round(v * 1000) for v in conversation.figures.ttfa]  # the histogram's own figures, per turn
    assert report.turns[0].ttfa_ms >= 50 and report.turns[1].ttfa_ms is not None
    assert [t.interrupted for t in report.turns] == [True, False]
    assert [t.outcome for t in report.turns] == ["answered", "answered"]
    assert report.interruptions == 1 and report.turns[0].at_ms <= report.turns[1].at_ms
    assert len(report.tool_calls) == 1 and report.tool_calls[0].status == "ok"
    assert report.tool_calls[0].latency_ms >= 20
    assert [(line.role, line.text) for line in report.transcript] == [
        ("caller", "what are your opening hours"), ("caller", "and where is the shop")]
    assert report.complete and report.end_reason == "caller-left" and report.worker == "pod-1"
    # What goes on the wire parses back as the contract (the gateway validates it so).
    assert WorkerCallReport.model_validate_json(report.model_dump_json(by_alias=True)) == report


async def test_provider_usage_comes_from_pipecats_usage_metrics():
    _, conversation = _observer(record=False)
    for frame in [MetricsFrame(data=[STTUsageMetricsData(processor="stt", value=STTUsage(audio_seconds=1.25))]),
                  MetricsFrame(data=[LLMUsageMetricsData(processor="llm", value=LLMTokenUsage(
                      prompt_tokens=40, completion_tokens=12, total_tokens=52))]),
                  MetricsFrame(data=[TTSUsageMetricsData(processor="tts", value=57)])]:
        await push([conversation], frame)
    report = build_report(session_id="sess-12345678", worker="pod-1", state=_state(), started_monotonic=0.0,
                          observer=conversation, tool_calls=ToolCallTimes(), record_transcripts=False)
    print(f"usage {report.usage.to_wire()}")
    assert report.usage.to_wire() == {"sttMs": 1250, "llmPromptTokens": 40, "llmCompletionTokens": 12,
                                      "ttsCharacters": 57}
    assert report.transcript is None  # the agent does not record transcripts: not even an empty list


async def test_a_live_session_reports_as_far_as_it_went_and_says_it_is_not_complete():
    report = build_report(session_id="sess-12345678", worker="pod-1", state=_state("active"),
                          started_monotonic=time.monotonic(), observer=None, tool_calls=None,
                          record_transcripts=False)
    assert not report.complete and report.end_reason is None and report.turns == []


async def test_turns_are_bounded():
    vad, conversation = _observer(record=False)
    for n in range(MAX_REPORT_TURNS + 5):
        await push([conversation], UserStartedSpeakingFrame())
        vad.last_voiced_at = time.monotonic()
        await push([conversation], UserStoppedSpeakingFrame())
    report = build_report(session_id="sess-12345678", worker="pod-1", state=_state(), started_monotonic=0.0,
                          observer=conversation, tool_calls=ToolCallTimes(), record_transcripts=False)
    print(f"turns kept {len(report.turns)} of {MAX_REPORT_TURNS + 5}, truncated {report.truncated}")
    assert len(report.turns) == MAX_REPORT_TURNS and report.truncated
    assert conversation.figures.turns == MAX_REPORT_TURNS + 5  # the metrics still count every turn


# -- the control API endpoint, on a real `voxfleet worker` process -------------------------------------------------

NO_LIVEKIT = SimpleNamespace(url="ws://127.0.0.1:9", api_key="unused", api_secret="unused" * 6)


async def test_a_real_worker_serves_a_finished_calls_report_only_with_its_token(tmp_path):
    """A call whose room cannot be joined ends at once (`error`); its report is complete, names this pod, and is
    served only with the worker's own token (another namespace's token, or none, is a 401; so a gateway holding
    tenant B's token learns nothing of tenant A's calls)."""
    import httpx

    from tests.worker.worker_harness import WorkerUnderTest, offline_spec

    worker = WorkerUnderTest.start(tmp_path, offline_spec(), livekit=NO_LIVEKIT)
    try:
        sid = worker.dispatch(room="unreachable-room").json()["session"]["sessionId"]
        deadline = time.monotonic() + 30
        while (report := worker.get(f"/v1/sessions/{sid}/report").json()).get("complete") is not True:
            assert time.monotonic() < deadline, report
            await asyncio.sleep(0.2)
        parsed = WorkerCallReport.model_validate(report)
        print(f"report of a call that could not join its room: {report}")
        assert parsed.session_id == sid and parsed.end_reason == "error" and parsed.worker.startswith("worker-")
        assert parsed.transcript is None and parsed.usage.stt_ms == 0
        others = {"none": {}, "another namespace's": {"Authorization": "Bearer " + "y" * 43}}
        for name, headers in others.items():
            refused = httpx.get(f"{worker.url}/v1/sessions/{sid}/report", headers=headers, timeout=10)
            assert refused.status_code == 401 and sid not in refused.text, name
        unknown = worker.get("/v1/sessions/no-such-session-123/report")
        assert unknown.status_code == 404 and unknown.json()["code"] == "session_not_found"
    finally:
        worker.stop()


@pytest.mark.world
async def test_a_draining_worker_waits_for_its_last_calls_report_to_be_fetched(livekit, tmp_path):
    """A worker whose reports a gateway pulls (it has served one) does not exit with the report of a call it
    finished while draining unfetched: it holds (at most REPORT_HOLD_S) until that report is fetched."""
    from tests.worker.worker_harness import WorkerUnderTest, offline_spec
    from voxfleet.worker.worker_process import REPORT_HOLD_S

    worker = WorkerUnderTest.start(tmp_path, offline_spec(), livekit=livekit["us-east"])
    try:
        first = worker.dispatch(room=f"hold-{uuid.uuid4().hex[:8]}").json()["session"]["sessionId"]
        worker.delete(f"/v1/sessions/{first}")
        assert worker.get(f"/v1/sessions/{first}/report").json()["complete"]  # this worker's reports are pulled
        last = worker.dispatch(room=f"hold-{uuid.uuid4().hex[:8]}").json()["session"]["sessionId"]
        deadline = time.monotonic() + 20
        while worker.get(f"/v1/sessions/{last}").json()["phase"] != "active":
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.1)
        worker.terminate()  # drain: the live call goes on
        await asyncio.sleep(0.5)
        worker.delete(f"/v1/sessions/{last}")  # ... and ends: the worker is drained
        ended = time.time()
        await asyncio.sleep(REPORT_HOLD_S / 3)
        report = worker.get(f"/v1/sessions/{last}/report").json()
        fetched = time.time()
        code = worker.wait(60)  # the process's own exit includes LiveKit's FFI shutdown (seconds, here)
        lines = [json.loads(line) for line in worker.log_tail(400).splitlines() if '"drained"' in line]
        assert lines, "the worker never logged that it drained"
        drained = datetime.fromisoformat(lines[-1]["timestamp"].replace("Z", "+00:00")).timestamp()
        print(f"last call ended, its report fetched {fetched - ended:.1f} s later; the worker drained"
              f" {drained - ended:.1f} s after the call ended (hold at most {REPORT_HOLD_S} s); exit code {code}")
        # It held on until the fetch (not before it), and no longer than the hold.
        assert fetched - 0.3 <= drained <= ended + REPORT_HOLD_S + 2.0
        assert report["complete"] and report["endReason"] == "deleted" and code == 0
    finally:
        worker.stop()
