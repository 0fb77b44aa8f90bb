"""A caller in a LiveKit room: speaks through a timed microphone, records what the agent says with arrival times,
and collects the room's live transcripts. `voxfleet call` is built on it, and tests and benchmarks use it to
judge an agent the way a person on the line would: by the audio in the room, never by the agent's logs.

    async with Caller(url, token) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=10)        # Utterance(start, end, pcm)
        spoken = await caller.say("what are your opening hours")         # SpokenTiming(started, voice_ended)
        answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)
        ttfa = answer.start - spoken.voice_ended                         # TTFA as the caller hears it
        caller.transcripts.text("agent", since=spoken.voice_ended)       # what the agent said (if published)

Times are ``time.monotonic()`` seconds of this process. Sending (a play-out clock): the microphone
publishes frames continuously through an AudioSource with a 20 ms queue (LiveKit's default 1 s queue would let
``capture_frame`` return a second before the audio leaves), and a sample's time is when it leaves that queue
(the return of ``capture_frame`` plus what is still queued ahead of it), so ``voice_ended`` is the end of the
caller's last voiced audio as sent to the room. Hearing: each received frame is timed on arrival. Silence goes
out between utterances as from a real microphone (an agent's VAD needs that silence to hear a turn end).

Tests and benchmarks use this same Caller (tests.callers.caller_bot re-exports it as CallerBot).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import structlog
from livekit import rtc

from voxfleet.devplatform import speech
from voxfleet.devplatform.heard_audio import (
    FRAME_MS,
    MAX_RECORD_SECONDS,
    SAMPLE_RATE,
    VOICED_RMS,
    HeardAudio,
    Utterance,
    rms,
)
from voxfleet.devplatform.room_transcripts import RoomTranscripts, TranscriptLine

MIC_QUEUE_MS = 20
LEAVE_TIMEOUT_S = 10.0

log = structlog.get_logger("voxfleet.caller")


@dataclass
class SpokenTiming:
    """When an utterance left for the room (play-out times): ``voice_ended``, its last voiced sample, starts TTFA."""
    text: str
    started: float = 0.0  # its first sample
    voice_started: float = 0.0  # its first voiced sample (a barge-in starts here)
    voice_ended: float = 0.0  # its last voiced sample
    ended: float = 0.0  # its last sample, trailing silence included
    done: asyncio.Future = field(default=None, repr=False)  # type: ignore[assignment]


class Caller:
    def __init__(self, url: str, token: str, *, voice: str = "en-us", rate: int = 175, frame_ms: int = 20,
                 listen_to: str | None = None, on_transcript=None):
        self.url, self.token = url, token
        self.voice, self.rate = voice, rate
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        self.listen_to = listen_to  # identity to record (default: every remote audio track)
        self.room = rtc.Room()
        self.heard = HeardAudio()
        self.transcripts = RoomTranscripts(self.room, on_line=on_transcript)
        self.agent_joined = asyncio.Event()
        self.agent_left = asyncio.Event()
        self._source: rtc.AudioSource | None = None
        self._queue: deque[tuple[np.ndarray, SpokenTiming]] = deque()
        # Each frame of a line with the time it began to play out: the caller's side of a recording (eval --save-audio).
        self.sent: deque[tuple[float, np.ndarray]] = deque(maxlen=MAX_RECORD_SECONDS * 1000 // frame_ms)
        self._tasks: list[asyncio.Task] = []
        self._streams: list[rtc.AudioStream] = []
        self._agents: set[str] = set()
        self._closing = False
        self._microphone_task: asyncio.Task | None = None

    async def __aenter__(self) -> "Caller":
        await self.join()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.leave()

    @property
    def identity(self) -> str:
        return self.room.local_participant.identity

    async def join(self) -> None:
        @self.room.on("track_subscribed")
        def on_track(track: rtc.Track, _publication, participant: rtc.RemoteParticipant):
            if track.kind != rtc.TrackKind.KIND_AUDIO or (self.listen_to and participant.identity != self.listen_to):
                return
            stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=FRAME_MS)
            self._streams.append(stream)
            self._tasks.append(asyncio.create_task(self._listen(stream)))
            self._agents.add(participant.identity)
            self.agent_joined.set()

        @self.room.on("participant_disconnected")
        def on_left(participant: rtc.RemoteParticipant):
            self._agents.discard(participant.identity)
            if self.agent_joined.is_set() and not self._agents:
                self.agent_left.set()

        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=MIC_QUEUE_MS)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        await self.room.local_participant.publish_track(track, options)
        self._microphone_task = asyncio.create_task(self._microphone())
        self._tasks.append(self._microphone_task)

    async def leave(self) -> None:
        # The microphone ends after its current frame: cancelling a capture mid-flight makes LiveKit's native
        # side log an error when the frame's completion arrives after the source is gone.
        self._closing = True
        microphone = self._microphone_task
        if microphone is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(microphone, 1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self.transcripts.close()
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        try:
            await asyncio.wait_for(self.room.disconnect(), LEAVE_TIMEOUT_S)
        except Exception as error:  # the agent would wait for a caller who is still "in" the room: say so
            log.warning("caller did not leave the room cleanly", identity=self.room.local_participant.identity,
                        error=f"{type(error).__name__}: {error}"[:300])
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()

    # --- speaking --------------------------------------------------------------------------------------------

    async def say(self, text: str, *, wait: bool = True) -> SpokenTiming:
        """Speak a line (eSpeak NG). Returns once its last voiced frame is out, or at once with ``wait=False``
        (for barge-in; the timing is then in ``await spoken.done``)."""
        samples = speech.synthesize(text, voice=self.voice, rate=self.rate)
        return await self._enqueue(samples, text, wait)

    async def play(self, samples: np.ndarray, *, wait: bool = True, text: str = "") -> SpokenTiming:
        """Publish 16 kHz int16 audio (a WAV's content, a tone) through the same timed microphone."""
        return await self._enqueue(samples.astype(np.int16, copy=False), text, wait)

    async def _enqueue(self, samples: np.ndarray, text: str, wait: bool) -> SpokenTiming:
        timing = SpokenTiming(text=text, done=asyncio.get_running_loop().create_future())
        self._queue.append((samples, timing))
        if wait:
            await timing.done
        return timing

    async def _microphone(self) -> None:
        silence = np.zeros(self.frame_samples, dtype=np.int16)
        while not self._closing:
            if not self._queue:
                await self._send(silence)
                continue
            samples, timing = self._queue.popleft()
            voiced_from, voiced_until = first_voiced_sample(samples), last_voiced_sample(samples)
            sent_until = 0.0
            for offset in range(0, len(samples), self.frame_samples):
                if self._closing:
                    break
                chunk = samples[offset:offset + self.frame_samples]
                if len(chunk) < self.frame_samples:
                    chunk = np.concatenate([chunk, silence[:self.frame_samples - len(chunk)]])
                await self._send(chunk)
                # This frame ends leaving once the source's queue ahead of it (and it) has played out.
                sent_until = time.monotonic() + self._source.queued_duration
                frame_start = sent_until - self.frame_samples / SAMPLE_RATE
                self.sent.append((frame_start, chunk))
                if offset == 0:
                    timing.started = frame_start
                if offset <= voiced_from < offset + self.frame_samples:
                    timing.voice_started = frame_start + (voiced_from - offset) / SAMPLE_RATE
                if offset <= voiced_until < offset + self.frame_samples:
                    timing.voice_ended = frame_start + (voiced_until + 1 - offset) / SAMPLE_RATE
            timing.ended = sent_until or time.monotonic()
            if not timing.voice_ended:
                timing.voice_ended = timing.ended  # nothing voiced in it: its end is the best we can say
            if not timing.done.done():
                timing.done.set_result(timing)

    async def _send(self, samples: np.ndarray) -> None:
        assert self._source is not None
        await self._source.capture_frame(rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, len(samples)))

    async def _listen(self, stream: rtc.AudioStream) -> None:
        # Timed on arrival: a frame-count play-out clock went wrong with ten callers in one busy process (frames
        # the native side dropped for a slow reader moved its anchor, by seconds in an eval run).
        async for event in stream:
            self.heard.add(time.monotonic(), bytes(event.frame.data))

    # --- listening -------------------------------------------------------------------------------------------

    def voiced_frames(self, since: float = 0.0) -> list[float]:
        return self.heard.voiced_times(since)

    def agent_audio(self, since: float = float("-inf"), until: float = float("inf")) -> bytes:
        return self.heard.audio(since, until)

    async def wait_for_agent_speech(self, *, after: float | None = None, timeout: float = 10.0,
                                    silence_s: float = 0.6) -> Utterance:
        """The first agent speech starting after ``after`` (default: now), once ``silence_s`` of quiet follows."""
        after = time.monotonic() if after is None else after
        return await self.heard.wait_for(lambda: self.heard.utterance_after(after, silence_s=silence_s),
                                         timeout=timeout, what="agent speech")

    async def wait_for_agent_silence(self, *, after: float, timeout: float = 5.0, silence_s: float = 0.1) -> float:
        """When the agent's audio stopped (last voiced frame before ``silence_s`` of quiet) after ``after``."""
        return await self.heard.wait_for(lambda: self.heard.silence_after(after, silence_s=silence_s),
                                         timeout=timeout, what="agent silence")

    def transcript_lines(self) -> list[TranscriptLine]:
        return list(self.transcripts.lines)


def first_voiced_sample(samples: np.ndarray, block: int = SAMPLE_RATE * FRAME_MS // 1000) -> int:
    """Index of the first sample of the first voiced 10 ms block (-1 when nothing is voiced)."""
    for start in range(0, len(samples), block):
        if rms(samples[start:start + block]) >= VOICED_RMS:
            return start
    return -1


def last_voiced_sample(samples: np.ndarray, block: int = SAMPLE_RATE * FRAME_MS // 1000) -> int:
    """Index of the last sample of the last voiced 10 ms block (-1 when nothing is voiced)."""
    for start in range((len(samples) - 1) // block * block, -1, -block):
        if rms(samples[start:start + block]) >= VOICED_RMS:
            return min(len(samples) - 1, start + block - 1)
    return -1
