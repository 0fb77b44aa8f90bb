"""No dead air from a slow model: the agent's `spec.replyFiller.say`, once, when the LLM's first words are late.

Sits right after the LLM, where it sees both what the caller did (Pipecat broadcasts UserStarted/Stopped-
SpeakingFrame and InterruptionFrame through the whole pipeline) and what the model did (LLMFullResponseStartFrame
as soon as it was asked, then its text or its tool calls). The bound is measured from the end of the caller's
turn, as a caller counts the silence.

At most one filler per caller turn, and none at all:
- once the answer began (its first text, or anything already being said, e.g. a tool's own filler);
- when the model called a tool: the tool's `filler` covers a slow tool, and two fillers in one turn sound broken;
- after an interruption, or for a turn the model was never asked about (a noise with no words).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    CancelFrame,
    EndFrame,
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxfleet.api.voiceagent import ReplyFiller

log = structlog.get_logger("voxfleet.worker.reply_filler")

# Frames that mean the caller is about to hear something other than the filler: it would only be in the way.
ANSWER_BEGAN = (LLMTextFrame, TTSSpeakFrame, FunctionCallsStartedFrame, BotStartedSpeakingFrame,
                LLMFullResponseEndFrame)


class ReplyFillerProcessor(FrameProcessor):
    def __init__(self, filler: ReplyFiller, *, session_id: str = "", **kwargs):
        super().__init__(**kwargs)
        self._after_s = filler.after_ms / 1000
        self._say = filler.say
        self._session_id = session_id
        self._awaiting_answer = False  # a caller turn began and the model has not yet been asked about it
        self._turn_ended_at: float | None = None
        self._timer: asyncio.Task | None = None

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, UserStartedSpeakingFrame):
            await self._disarm()
            self._awaiting_answer, self._turn_ended_at = True, None
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._turn_ended_at = time.monotonic()
        elif isinstance(frame, LLMFullResponseStartFrame) and direction == FrameDirection.DOWNSTREAM:
            if self._awaiting_answer and self._after_s > 0:
                await self._arm()
            self._awaiting_answer = False  # a tool result's second answer in the same turn gets none
        elif isinstance(frame, (InterruptionFrame, EndFrame, CancelFrame)):
            await self._disarm()
        elif isinstance(frame, ANSWER_BEGAN) and not (isinstance(frame, LLMTextFrame) and not frame.text.strip()):
            await self._disarm()
        await self.push_frame(frame, direction)

    async def cleanup(self):
        await self._disarm()
        await super().cleanup()

    async def _arm(self) -> None:
        await self._disarm()
        ended = self._turn_ended_at if self._turn_ended_at is not None else time.monotonic()
        self._timer = self.create_task(self._say_when_late(ended + self._after_s - time.monotonic()),
                                       "reply-filler")

    async def _disarm(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            await self.cancel_task(timer)

    async def _say_when_late(self, wait_s: float) -> None:
        await asyncio.sleep(max(0.0, wait_s))
        self._timer = None  # said: nothing left to cancel, and a cancel must not cut the frame's push short
        log.info("reply filler", session_id=self._session_id, after_ms=round(self._after_s * 1000))
        await self.push_frame(TTSSpeakFrame(self._say, append_to_context=False))
