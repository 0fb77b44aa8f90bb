"""Caller audio ends at the user aggregator.

Pipecat passes every input audio frame on to the end of the pipeline, so each 32 ms frame would also queue
through the LLM, TTS, output transport and assistant aggregator, none of which use it. Four task hops per frame
per session are a good part of what an idle call costs; this processor drops the frames where their use ends.
"""

from __future__ import annotations

from pipecat.frames.frames import InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


class InputAudioStop(FrameProcessor):
    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if not isinstance(frame, InputAudioRawFrame):
            await self.push_frame(frame, direction)
