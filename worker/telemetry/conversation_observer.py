"""Watches one session's frames and turns them into latency figures, turn counts and usage.

How TTFA is estimated (worker side): the session's VAD records the monotonic time at which it last judged a
32 ms window voiced (`SharedSileroVAD.last_voiced_at`, i.e. when the caller's last voiced audio reached the
worker); the output transport pushes BotStartedSpeakingFrame immediately before it writes the turn's first
audio frame to the LiveKit audio source. TTFA = the second minus the first. It leaves out the two network legs
(caller -> worker, worker -> caller), which a caller adds on top; tests check the estimate against the TTFA a
caller hears minus two one-way legs through livekit-server (a tone from one participant to another, timed on the
machine's one monotonic clock) measured in the same run.

Barge-ins (worker/barge_in.py) are counted from the barge-in strategy's decisions (`count_barge_in`): every
pause is an interruption (the agent went quiet for the caller); one that no words followed is a false
interruption, one that only backchannels followed a backchannel. A turn that starts while the agent speaks
without a pause before it (interruptions disabled, or words that came before the voice) is counted as one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    MetricsFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import LLMUsageMetricsData, STTUsageMetricsData, TTFBMetricsData, TTSUsageMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxfleet.worker.barge_in import BargeInOutcome
from voxfleet.worker.telemetry import metrics
from voxfleet.worker.telemetry.turn_outcomes import MAX_WORDS, TurnJudge, TurnOutcome, words_of

MAX_TRANSCRIPT_LINES = 500
MAX_LINE_CHARS = 1000
MAX_TURN_LOG = 2000  # voxfleet.api.call_report.MAX_REPORT_TURNS


@dataclass
class Usage:
    stt_seconds: float = 0.0
    llm_input_tokens: int = 0
    llm_output_tokens: int = 0
    tts_characters: int = 0


@dataclass
class TurnFigures:
    """The latest turn's figures, for the session state and the usage record."""

    ttfa: list[float] = field(default_factory=list)
    turns: int = 0
    interruptions: int = 0
    false_interruptions: int = 0
    backchannels: int = 0
    turn_outcomes: dict[str, int] = field(default_factory=dict)


@dataclass
class TurnEntry:
    """One caller turn, for the end-of-call report (voxfleet.worker.call_report)."""

    ended_at: float  # monotonic: when the caller stopped for an answer
    ttfa: float | None = None  # the TTFA the histogram recorded for this turn's answer
    interrupted: bool = False  # the caller barged in while the agent answered it
    outcome: TurnOutcome | None = None


class ConversationObserver(BaseObserver):
    def __init__(self, *, labels: dict[str, str], vad: Any, stt_name: str, llm_name: str, tts_name: str,
                 record_transcripts: bool):
        super().__init__(observe_every_push=False)
        self._labels = labels
        self._vad = vad
        self._names = {stt_name: "stt", llm_name: "llm", tts_name: "tts"}
        self._record = record_transcripts
        self.usage = Usage()
        self.figures = TurnFigures()
        self.transcript: list[dict[str, Any]] = []
        # Per caller turn, in order: what the end-of-call report says of each (bounded; turns_truncated says so).
        self.turn_log: list[TurnEntry] = []
        self.turns_truncated = False
        self._speech_end_turn: TurnEntry | None = None  # the turn _speech_end belongs to
        self._unjudged: list[TurnEntry] = []  # turns with words, oldest first: TurnJudge judges them in this order
        self.last_activity = time.monotonic()
        self._bot_speaking = False
        self._speech_end: float | None = None  # last voiced audio of the turn awaiting its answer
        self._interrupted_turn = False
        self._barge_in_counted = False  # a pause already counted the interruption the next turn start belongs to
        self._in_turn = False  # between the caller's turn start and its end (a session end closes none)
        # Final transcripts since the previous turn ended: the words of the turn ending next (a transcript can
        # reach the observer just before the turn's start frame when a transcript starts the turn).
        self._turn_text: list[str] = []
        self._judge = TurnJudge(self._count_outcome)

    def _observe(self, histogram, value: float) -> None:
        if value >= 0:
            histogram.labels(**self._labels).observe(value)

    async def on_push_frame(self, data: FramePushed):
        frame = data.frame
        now = _pushed_at(data)
        if isinstance(frame, BotStartedSpeakingFrame):
            if data.direction != FrameDirection.DOWNSTREAM:
                return
            self._bot_speaking = True
            self.last_activity = now
            self._judge.agent_started_speaking()
            if self._speech_end is not None:
                ttfa = now - self._speech_end
                self._speech_end = None
                self.figures.ttfa.append(ttfa)
                self._observe(metrics.TTFA, ttfa)
                if self._speech_end_turn is not None:
                    self._speech_end_turn.ttfa = ttfa
                self._speech_end_turn = None
        elif isinstance(frame, BotStoppedSpeakingFrame):
            if data.direction == FrameDirection.DOWNSTREAM:
                self._bot_speaking = False
                self.last_activity = now
                self._judge.agent_stopped_speaking()
        elif isinstance(frame, UserStartedSpeakingFrame):
            # Pipecat broadcasts the caller's turn frames both ways (two frames): count the downstream one only,
            # or every barge-in is counted twice.
            if data.direction != FrameDirection.DOWNSTREAM:
                return
            self.last_activity = now
            self._in_turn = True
            self._interrupted_turn = self._bot_speaking or self._barge_in_counted
            if self._interrupted_turn:
                if not self._barge_in_counted:
                    self._count_interruption()
                self._barge_in_counted = False
                if self.turn_log:  # the agent was answering the latest turn (not the greeting before any)
                    self.turn_log[-1].interrupted = True
        elif isinstance(frame, TranscriptionFrame):
            self.last_activity = now
            if frame.text.strip():
                if len(self._turn_text) < MAX_WORDS:
                    self._turn_text.append(frame.text)
                self._remember("caller", frame.text)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            if data.direction != FrameDirection.DOWNSTREAM or not self._in_turn:
                return
            self._in_turn = False
            self.last_activity = now
            self._interrupted_turn = False
            voiced = getattr(self._vad, "last_voiced_at", 0.0)
            entry = self._log_turn(now)
            if voiced:
                self._observe(metrics.TURN_DETECTION, now - voiced)
                self._speech_end = voiced
                self._speech_end_turn = entry
            self.figures.turns += 1
            metrics.TURNS.labels(**self._labels).inc()
            text, self._turn_text = " ".join(self._turn_text), []
            self._judge.caller_turn_ended(text)
            if entry is not None and words_of(text):
                self._unjudged.append(entry)
        elif isinstance(frame, MetricsFrame):
            self._metrics(frame)

    def _metrics(self, frame: MetricsFrame) -> None:
        for item in frame.data:
            stage = self._names.get(item.processor)
            if isinstance(item, TTFBMetricsData) and stage and item.value > 0:
                self._observe({"stt": metrics.STT_FINAL_LATENCY, "llm": metrics.LLM_TTFT,
                               "tts": metrics.TTS_TTFB}[stage], item.value)
            elif isinstance(item, LLMUsageMetricsData):
                self.usage.llm_input_tokens += item.value.prompt_tokens
                self.usage.llm_output_tokens += item.value.completion_tokens
            elif isinstance(item, TTSUsageMetricsData):
                self.usage.tts_characters += item.value
            elif isinstance(item, STTUsageMetricsData):
                self.usage.stt_seconds += item.value.audio_seconds

    def count_barge_in(self, outcome: BargeInOutcome) -> None:
        """The barge-in strategy's decisions, as they are made (worker/barge_in.py)."""
        self.last_activity = time.monotonic()
        if outcome == "paused":
            self._count_interruption()
            self._barge_in_counted = True
        elif outcome in ("resumed", "ended"):  # no words: the agent went quiet for a noise
            self.figures.false_interruptions += 1
            metrics.FALSE_INTERRUPTIONS.labels(**self._labels).inc()
            self._barge_in_counted = False
        elif outcome == "backchannel":
            self.figures.backchannels += 1
            metrics.BACKCHANNELS.labels(**self._labels).inc()
            self._barge_in_counted = False
        # "interrupted": the turn start that follows is this pause's interruption (counted once, above)

    def _count_interruption(self) -> None:
        self.figures.interruptions += 1
        metrics.INTERRUPTIONS.labels(**self._labels).inc()

    def call_ended(self, end_reason: str) -> None:
        """Judge the turn still waiting for its outcome (the session calls this once, as it ends)."""
        self._judge.call_ended(caller_hung_up=end_reason == "caller-left")

    def _log_turn(self, ended_at: float) -> TurnEntry | None:
        if len(self.turn_log) >= MAX_TURN_LOG:
            self.turns_truncated = True
            return None
        entry = TurnEntry(ended_at=ended_at)
        self.turn_log.append(entry)
        return entry

    def _count_outcome(self, outcome: TurnOutcome) -> None:
        # The judge speaks of the oldest turn it holds, before (caller_turn_ended) the new one is queued.
        if self._unjudged:
            self._unjudged.pop(0).outcome = outcome
        self.figures.turn_outcomes[outcome] = self.figures.turn_outcomes.get(outcome, 0) + 1
        metrics.TURN_OUTCOME.labels(**self._labels, outcome=outcome).inc()

    def note_agent_text(self, text: str) -> None:
        self._remember("agent", text)

    def _remember(self, who: str, text: str) -> None:
        if self._record and len(self.transcript) < MAX_TRANSCRIPT_LINES:
            self.transcript.append({"who": who, "text": text[:MAX_LINE_CHARS], "at": time.monotonic()})


def _pushed_at(data: FramePushed) -> float:
    """When the frame was pushed (monotonic): observers run from a queue, possibly later under load."""
    now = time.monotonic()
    try:
        lag_ns = data.source.get_clock().get_time() - data.timestamp
    except Exception:  # a processor without a clock (not set up): now is the best we know
        return now
    return now - max(0, lag_ns) / 1e9 if data.timestamp else now
