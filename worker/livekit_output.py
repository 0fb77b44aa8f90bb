"""Our LiveKit output: on barge-in, the agent's audio stops before anything else is done, and stays stopped.

Pipecat's LiveKit output clears the AudioSource's queue (audio_out_queue_ms of speech not yet sent) only after
the base transport has handled the interruption (several awaits; on a busy loop, tens of ms of speech still
going out). And its audio task is usually blocked in `capture_frame`, waiting for room in that full queue, with
the next chunk (40 ms) in hand: clearing the queue makes room, the chunk goes in, and the caller hears it after
the barge-in. Here the queue is cleared as soon as the interruption arrives, and again when a chunk that was
waiting through it gets in.
"""

from __future__ import annotations

from pipecat.frames.frames import InterruptionFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.livekit.transport import LiveKitOutputTransport


class PromptStopLiveKitOutput(LiveKitOutputTransport):
    _interruptions = 0

    def _clear_source(self) -> None:
        if self._client._audio_source is not None:
            self._client._audio_source.clear_queue()

    async def process_frame(self, frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            self._interruptions += 1
            self._clear_source()
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        interruptions = self._interruptions
        written = await super().write_audio_frame(frame)
        if self._interruptions != interruptions:  # this chunk waited for room through a barge-in: drop it too
            self._clear_source()
        return written
