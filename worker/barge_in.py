"""Barge-in as "pause, then decide" (as LiveKit Agents does it; Pipecat cancels the reply at the caller's voice).

When the caller's voice starts while the agent speaks, the agent's audio is paused at once (what the caller
hears stops within the VAD start time: the output's queue is cleared, see livekit_output.py), and the reply is
kept. Then the caller's words decide:

- words that are not only backchannels, at least `interruptions.minWords` of them (1 when 0): an interruption.
  The user turn starts with Pipecat's interruption, which cancels the reply; the caller's turn proceeds.
- only backchannels ("mhm", "okay"; worker/backchannels.py), or fewer words than minWords: the agent plays on
  from where it paused and the words are dropped from the next turn's text.
- no words by `falseInterruptionTimeoutMs` after the voice stopped (a cough, a door): the agent plays on; with
  0 the reply ends instead (the previous behaviour for noise).

When the agent is silent the caller's voice starts a turn as Pipecat's VAD strategy would (a transcript does
when minWords > 0), so turn taking and TTFA are unchanged. A non-interruptible tool mutes the caller before any
of this (the aggregator drops the VAD and transcript frames: tool_mute_strategy.py), so there is no pause then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal, Protocol

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.turns.types import ProcessFrameResult
from pipecat.turns.user_start.base_user_turn_start_strategy import BaseUserTurnStartStrategy

from voxfleet.worker.backchannels import Backchannels

# The final transcript reaches the user aggregator a few hops after the VAD stop that ends the utterance (the
# VAD runs in the aggregator; the STT is upstream of it): a decision never comes sooner than this after the stop.
FINAL_TRANSCRIPT_GRACE_S = 0.25

BargeInOutcome = Literal["paused", "backchannel", "resumed", "interrupted", "ended"]


class PausableOutput(Protocol):
    def pause(self) -> float: ...

    def resume(self) -> None: ...


class PauseThenDecideStrategy(BaseUserTurnStartStrategy):
    def __init__(self, *, output: PausableOutput, backchannels: Backchannels, min_words: int,
                 false_interruption_timeout_s: float, on_outcome: Callable[[BargeInOutcome], None] = lambda _: None):
        super().__init__(enable_interruptions=True)
        self._output = output
        self._backchannels = backchannels
        self._min_words = max(1, min_words)
        self._vad_starts_turn = min_words == 0
        self._timeout_s = false_interruption_timeout_s
        self._on_outcome = on_outcome
        self._bot_speaking = False
        self._paused = False
        self._deadline: asyncio.Task | None = None

    async def cleanup(self):
        await super().cleanup()
        self._cancel_deadline()

    async def process_frame(self, frame: Frame) -> ProcessFrameResult:
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking = True
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._bot_speaking = False
        elif isinstance(frame, InterruptionFrame):  # whoever interrupted, the reply that was paused is gone
            self._settled()
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            return await self._voice_started()
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            if self._paused:
                self._cancel_deadline()
                self._deadline = asyncio.get_running_loop().create_task(self._decide_at_deadline())
        elif isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
            return await self._words(frame.text, final=isinstance(frame, TranscriptionFrame))
        return ProcessFrameResult.CONTINUE

    async def _voice_started(self) -> ProcessFrameResult:
        if self._bot_speaking or self._paused:
            self._cancel_deadline()  # still (or again) speaking: the caller's words are yet to come
            if not self._paused:
                self._paused = True
                self._output.pause()
                self._on_outcome("paused")
            return ProcessFrameResult.STOP
        if self._vad_starts_turn:
            await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        return ProcessFrameResult.CONTINUE

    async def _words(self, text: str, *, final: bool) -> ProcessFrameResult:
        heard, beyond = self._backchannels.words_beyond(text)
        if not heard:
            return ProcessFrameResult.CONTINUE
        agent_holds_turn = self._bot_speaking or self._paused
        # Over the agent only words beyond backchannels count; to a silent agent "okay" is an answer too.
        if (beyond >= self._min_words) if agent_holds_turn else (heard >= 1):
            if self._paused:
                self._on_outcome("interrupted")
            self._settled()
            await self.trigger_user_turn_started()
            return ProcessFrameResult.STOP
        if not agent_holds_turn or not final:
            return ProcessFrameResult.CONTINUE  # an interim: more words may come
        # Only backchannels (or fewer words than minWords): they are not the caller's turn.
        await self.trigger_reset_aggregation()
        if self._paused:
            self._settled()
            self._output.resume()
        self._on_outcome("backchannel")
        return ProcessFrameResult.STOP

    async def _decide_at_deadline(self) -> None:
        await asyncio.sleep(max(self._timeout_s, FINAL_TRANSCRIPT_GRACE_S))
        self._deadline = None
        if not self._paused:
            return
        self._settled()
        if self._timeout_s > 0:
            self._output.resume()
            self._on_outcome("resumed")
        else:
            await self.broadcast_frame(InterruptionFrame)  # 0: a pause always ends the reply
            self._on_outcome("ended")

    async def handle_user_turn_started(self):
        self._settled()

    def _settled(self) -> None:
        self._paused = False
        self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        task, self._deadline = self._deadline, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
