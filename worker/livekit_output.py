"""Our LiveKit output: the agent's audio stops at once, either for good (an interruption) or paused (barge-in
not yet decided, worker/barge_in.py), in which case it can resume where the caller stopped hearing it.

Pipecat's LiveKit output clears the AudioSource's queue (audio_out_queue_ms of speech not yet sent) only after
the base transport has handled the interruption (several awaits; on a busy loop, tens of ms of speech still
going out). And its audio task is usually blocked in `capture_frame`, waiting for room in that full queue, with
the next chunk (40 ms) in hand: clearing the queue makes room, the chunk goes in, and the caller hears it after
the barge-in. Here the queue is cleared as soon as the interruption arrives, and again when a chunk that was
waiting through it gets in.

A pause clears the same queue but keeps what it held (the last `queued_duration` of what was written, recorded
here since LiveKit cannot hand it back) and holds the audio task at its next chunk; `resume()` writes the kept
audio again and lets the task go on, so the caller hears the reply from where it went quiet. An interruption
during a pause drops both.
"""

from __future__ import annotations

import asyncio
from collections import deque

from livekit import rtc
from pipecat.frames.frames import InterruptionFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.livekit.transport import LiveKitOutputTransport

# What a pause can hand back is what was still queued in the AudioSource: at most its queue (the worker setting
# audio_out_queue_ms, <= 1 s) plus the chunk being written. 1.5 s of recent frames covers it.
RECENT_AUDIO_S = 1.5
# A pause ends (the agent plays on) after at most the longest false-interruption timeout (10 s) plus 10 s of a
# caller's sound without words; Pipecat gives up on a peer whose write takes longer than the write timeout (and
# ends the call), so that timeout is set above the longest pause.
PAUSE_LIMIT_S = 20.0
WRITE_TIMEOUT_S = PAUSE_LIMIT_S + 10.0


class PromptStopLiveKitOutput(LiveKitOutputTransport):
    _interruptions = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._recent: deque[rtc.AudioFrame] = deque()  # written frames, newest last, ~RECENT_AUDIO_S of them
        self._recent_s = 0.0
        self._kept: list[rtc.AudioFrame] = []  # what the pause took out of the source, to play again on resume
        self._writing: rtc.AudioFrame | None = None  # the chunk being handed to the source (it may wait for room)
        self._pauses = 0
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._replay_lock = asyncio.Lock()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def _source(self) -> rtc.AudioSource | None:
        return self._client._audio_source

    def _clear_source(self) -> None:
        if self._source() is not None:
            self._source().clear_queue()

    def pause(self) -> float:
        """Silence the agent now, keeping the unplayed audio. Returns the seconds of audio kept."""
        if self.paused:
            return sum(frame.duration for frame in self._kept)
        source = self._source()
        queued = source.queued_duration if source is not None else 0.0
        # The source counts a chunk still being handed over as queued; it is kept when its write returns.
        in_flight = self._writing.duration if self._writing is not None else 0.0
        self._kept = _newest(self._recent, queued - in_flight)
        self._pauses += 1
        self._resumed.clear()
        self._clear_source()
        return queued

    def resume(self) -> None:
        """Play on from where the caller stopped hearing the agent (nothing happens if it is not paused)."""
        if not self.paused:
            return
        self._resumed.set()
        # The audio task may be idle (the whole reply was already in the source): write the kept audio anyway.
        self.create_task(self._replay(), f"{self}::replay")

    def _drop_pause(self) -> None:
        self._kept = []
        self._resumed.set()

    async def _replay(self) -> None:
        async with self._replay_lock:
            kept, self._kept = self._kept, []
            interruptions = self._interruptions
            for index, frame in enumerate(kept):
                if self._interruptions != interruptions:  # the reply was cancelled meanwhile
                    return
                if self.paused:  # paused again meanwhile: the rest plays after that pause
                    self._kept.extend(kept[index:])
                    return
                if await self._client.publish_audio(frame):
                    self._remember(frame)  # a second pause can keep it again

    async def process_frame(self, frame, direction: FrameDirection):
        if isinstance(frame, InterruptionFrame):
            self._interruptions += 1
            self._drop_pause()
            self._clear_source()
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        interruptions, pauses = self._interruptions, self._pauses
        if self.paused:
            try:
                await asyncio.wait_for(self._resumed.wait(), PAUSE_LIMIT_S)
            except TimeoutError:
                self._resumed.set()
            if self._interruptions != interruptions:  # the pause ended in an interruption: this chunk is stale
                return False
            await self._replay()  # what the pause kept goes out before this chunk
            pauses = self._pauses
        livekit_frame = self._convert_pipecat_audio_to_livekit(frame.audio)
        self._writing = livekit_frame
        try:
            written = await self._client.publish_audio(livekit_frame)
        finally:
            self._writing = None
        if self._interruptions != interruptions:  # this chunk waited for room through a barge-in: drop it too
            self._clear_source()
        elif self._pauses != pauses and self.paused:  # ... through a pause: take it out again, to play on resume
            self._clear_source()
            self._kept.append(livekit_frame)
        elif written:
            self._remember(livekit_frame)
        return written

    def _remember(self, frame: rtc.AudioFrame) -> None:
        self._recent.append(frame)
        self._recent_s += frame.duration
        while self._recent and self._recent_s - self._recent[0].duration >= RECENT_AUDIO_S:
            self._recent_s -= self._recent.popleft().duration


def _newest(frames: deque[rtc.AudioFrame], seconds: float) -> list[rtc.AudioFrame]:
    """The last `seconds` of `frames` (the first one cut to fit), oldest first."""
    kept: list[rtc.AudioFrame] = []
    left = seconds
    for frame in reversed(frames):
        if left <= 0:
            break
        if frame.duration <= left:
            kept.append(frame)
            left -= frame.duration
        else:
            samples = int(round(left * frame.sample_rate)) * frame.num_channels
            data = frame.data[-samples:] if samples else frame.data[:0]
            if samples:
                kept.append(rtc.AudioFrame(data.tobytes(), frame.sample_rate, frame.num_channels,
                                           samples // frame.num_channels))
            left = 0
    kept.reverse()
    return kept
