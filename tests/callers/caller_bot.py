"""A caller for tests and benchmarks: joins a LiveKit room, speaks, listens, and times what it hears.

It judges an agent the way a person on the line would: by the audio in the room, never by the agent's logs.

    from tests.callers.caller_bot import CallerBot, Recogniser, measure_one_way, mint_token

    token = mint_token(region, room="r1", identity="caller-1")          # region: world LiveKitRegion (or url/key/secret)
    async with CallerBot(region.url, token) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=10)       # Utterance(start, end, pcm)
        spoken = await caller.say("what are your opening hours")        # SpokenTiming(started, voice_ended)
        answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)
        ttfa = answer.start - spoken.voice_ended                        # TTFA as the caller hears it
        text = Recogniser(["we are open every day ..."]).recognise(answer.pcm)

API (all times are time.monotonic() seconds in this process):
- `CallerBot(url, token, *, voice="en-us", rate=175, frame_ms=20)`: `await join()` / `await leave()` (or
  `async with`). A background microphone publishes 20 ms frames continuously through an AudioSource with a
  20 ms queue, so a frame is sent within ~20 ms of when we say it is (the default 1 s queue would let the
  timestamps run a second ahead of the audio). Silence goes out between utterances, like a real microphone.
- `await say(text)` -> SpokenTiming: speaks eSpeak NG speech; returns when the last voiced frame has been
  handed over, with `voice_ended` = that moment (the end of the caller's speech, TTFA's start).
  `say(..., wait=False)` returns once the speech is queued (for barge-in tests); timing is then in
  `await spoken.done`.
- Everything the agent sends is recorded with play-out times (16 kHz mono, 10 ms frames; times come from the
  frame count, so a busy test process does not make the agent look slow): `agent_audio(since, until)` gives
  the PCM, `voiced_frames(since)` the voiced-frame times. Recognise recordings after the timed part of a
  test: decoding blocks the event loop (and so the microphone) for about a second per utterance.
- `await wait_for_agent_speech(after=None, timeout=10, silence_s=0.6)` -> Utterance: the first agent speech
  starting after `after`, ending when `silence_s` of silence follows it (start = first voiced frame heard,
  end = last voiced frame heard).
- `await wait_for_agent_silence(after, timeout, silence_s=0.1)` -> the time of the last voiced frame before a
  gap of `silence_s` (when the agent's audio stopped, as heard).
- `Recogniser(phrases).recognise(pcm16k)` -> text: PocketSphinx constrained to the phrases you expect (any
  sequence of them), so eSpeak's voice is recognised exactly; `contains(pcm, phrase)` for asserts.
- `await measure_one_way(speaker, listener, n)`: one leg speaker -> server -> listener, timed on the machine's
  one monotonic clock; a caller's TTFA holds two such legs on top of the agent's own time.
- `EchoBot(url, token)`: republishes what it hears at once; `await measure_round_trip(caller, n)` times
  caller -> server -> echo -> server -> caller (two legs plus the echo's own buffering, ~65 ms here).
- `mint_token(region, room, identity)`: a LiveKit access token (tests hold the dev API secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import soxr
from livekit import api, rtc

from voxfleet.worker.providers.espeak_voice import ESpeakVoice

SAMPLE_RATE = 16000
LISTEN_FRAME_MS = 10
VOICED_RMS = 300.0  # int16 RMS: eSpeak speech is in the thousands, Opus silence is ~0
MAX_RECORD_S = 600


def mint_token(region=None, *, room: str, identity: str, url: str | None = None, api_key: str | None = None,
               api_secret: str | None = None, ttl_s: int = 3600) -> str:
    key = api_key or region.api_key
    secret = api_secret or region.api_secret
    from datetime import timedelta

    return (api.AccessToken(key, secret).with_identity(identity).with_name(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True))
            .with_ttl(timedelta(seconds=ttl_s)).to_jwt())


def rms(pcm: bytes | np.ndarray) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))


def synthesize(text: str, *, voice: str = "en-us", rate: int = 175) -> np.ndarray:
    """eSpeak NG speech as 16 kHz int16 samples."""
    engine = ESpeakVoice.shared()
    pcm = np.frombuffer(engine.synthesize_pcm(text, voice=voice, rate=rate), dtype=np.int16)
    return soxr.resample(pcm, engine.sample_rate, SAMPLE_RATE).astype(np.int16)


@dataclass
class SpokenTiming:
    text: str
    started: float = 0.0  # first frame handed to the source
    voice_started: float = 0.0  # the frame holding the first voiced sample handed to the source
    voice_ended: float = 0.0  # the frame holding the last voiced sample handed to the source
    ended: float = 0.0  # last frame of the utterance (incl. eSpeak's trailing silence) handed over
    done: asyncio.Future = field(default=None, repr=False)  # type: ignore[assignment]


@dataclass
class Utterance:
    start: float
    end: float
    pcm: bytes

    @property
    def duration(self) -> float:
        return self.end - self.start


class PlayoutClock:
    """When each received frame was played out, from the frame count rather than from when Python got to it.

    The native side plays a subscribed track out continuously, one frame every 10 ms (silence included); a busy
    event loop only delays delivery. So a frame's time is the earliest `arrival - index x 10 ms` seen over the
    last second, plus its own index: frames delivered late in a burst keep the time they were heard.
    """

    def __init__(self, frame_s: float, window: int = 100):
        self.frame_s = frame_s
        self.count = 0
        self.recent: deque[float] = deque(maxlen=window)

    def tick(self) -> float:
        base = time.monotonic() - self.count * self.frame_s
        if self.recent and base - min(self.recent) > 1.0:
            self.recent.clear()  # a second later than expected: the stream paused, start a new anchor
        self.recent.append(base)
        at = min(self.recent) + self.count * self.frame_s
        self.count += 1
        return at


class _Recording:
    """Agent audio with arrival times: frames of 10 ms, kept for at most MAX_RECORD_S."""

    def __init__(self):
        self.frames: deque[tuple[float, bytes, bool]] = deque(maxlen=MAX_RECORD_S * 1000 // LISTEN_FRAME_MS)
        self.changed = asyncio.Condition()

    async def add(self, at: float, pcm: bytes) -> None:
        self.frames.append((at, pcm, rms(pcm) >= VOICED_RMS))
        async with self.changed:
            self.changed.notify_all()


class CallerBot:
    def __init__(self, url: str, token: str, *, voice: str = "en-us", rate: int = 175, frame_ms: int = 20,
                 listen_to: str | None = None):
        self.url, self.token = url, token
        self.voice, self.rate = voice, rate
        self.frame_samples = SAMPLE_RATE * frame_ms // 1000
        self.listen_to = listen_to  # identity to record (default: every remote audio track)
        self.room = rtc.Room()
        self.recording = _Recording()
        self._source: rtc.AudioSource | None = None
        self._queue: deque[tuple[np.ndarray, SpokenTiming]] = deque()
        self._tasks: list[asyncio.Task] = []
        self._streams: list[rtc.AudioStream] = []
        self.agent_joined = asyncio.Event()

    async def __aenter__(self) -> "CallerBot":
        await self.join()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.leave()

    async def join(self) -> None:
        @self.room.on("track_subscribed")
        def on_track(track: rtc.Track, _publication, participant: rtc.RemoteParticipant):
            if track.kind != rtc.TrackKind.KIND_AUDIO:
                return
            if self.listen_to and participant.identity != self.listen_to:
                return
            stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=LISTEN_FRAME_MS)
            self._streams.append(stream)
            self._tasks.append(asyncio.create_task(self._listen(stream)))
            self.agent_joined.set()

        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=20)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", self._source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        await self.room.local_participant.publish_track(track, options)
        self._tasks.append(asyncio.create_task(self._microphone()))

    async def leave(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        with contextlib.suppress(Exception):
            await self.room.disconnect()
        if self._source is not None:
            with contextlib.suppress(Exception):
                await self._source.aclose()

    async def _listen(self, stream: rtc.AudioStream) -> None:
        clock = PlayoutClock(LISTEN_FRAME_MS / 1000)
        async for event in stream:
            await self.recording.add(clock.tick(), bytes(event.frame.data))

    async def _microphone(self) -> None:
        silence = np.zeros(self.frame_samples, dtype=np.int16)
        assert self._source is not None
        while True:
            if not self._queue:
                await self._send(silence)
                continue
            samples, timing = self._queue.popleft()
            voiced_until = _last_voiced_sample(samples)
            voiced_from = _first_voiced_sample(samples)
            for offset in range(0, len(samples), self.frame_samples):
                chunk = samples[offset:offset + self.frame_samples]
                if len(chunk) < self.frame_samples:
                    chunk = np.concatenate([chunk, silence[:self.frame_samples - len(chunk)]])
                await self._send(chunk)
                now = time.monotonic()
                if offset == 0:
                    timing.started = now
                if offset <= voiced_from < offset + self.frame_samples:
                    timing.voice_started = now
                if offset <= voiced_until < offset + self.frame_samples:
                    timing.voice_ended = now
            timing.ended = time.monotonic()
            if not timing.done.done():
                timing.done.set_result(timing)

    async def _send(self, samples: np.ndarray) -> None:
        frame = rtc.AudioFrame(samples.tobytes(), SAMPLE_RATE, 1, len(samples))
        await self._source.capture_frame(frame)

    async def say(self, text: str, *, wait: bool = True) -> SpokenTiming:
        samples = synthesize(text, voice=self.voice, rate=self.rate)
        timing = SpokenTiming(text=text, done=asyncio.get_running_loop().create_future())
        self._queue.append((samples, timing))
        if wait:
            await timing.done
        return timing

    async def play(self, samples: np.ndarray, *, wait: bool = True) -> SpokenTiming:
        """Publish arbitrary 16 kHz int16 audio (e.g. a tone) through the same timed path."""
        timing = SpokenTiming(text="", done=asyncio.get_running_loop().create_future())
        self._queue.append((samples.astype(np.int16), timing))
        if wait:
            await timing.done
        return timing

    # -- listening ----------------------------------------------------------------------------------------------

    def voiced_frames(self, since: float = 0.0) -> list[float]:
        return [at for at, _, voiced in list(self.recording.frames) if voiced and at > since]

    def agent_audio(self, since: float, until: float) -> bytes:
        return b"".join(pcm for at, pcm, _ in list(self.recording.frames) if since <= at <= until)

    async def _wait_until(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        async with self.recording.changed:
            while True:
                result = predicate()
                if result is not None:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"caller heard nothing matching within {timeout:.1f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.recording.changed.wait(), min(remaining, 0.1))

    async def wait_for_agent_speech(self, *, after: float | None = None, timeout: float = 10.0,
                                    silence_s: float = 0.6) -> Utterance:
        after = time.monotonic() if after is None else after

        def finished() -> Utterance | None:
            frames = [(at, voiced) for at, _, voiced in list(self.recording.frames) if at > after]
            voiced = [at for at, v in frames if v]
            if not voiced or not frames:
                return None
            start, last = voiced[0], voiced[-1]
            if frames[-1][0] - last < silence_s:
                return None
            return Utterance(start=start, end=last, pcm=self.agent_audio(start - 0.05, last + 0.05))

        return await self._wait_until(finished, timeout)

    async def wait_for_agent_silence(self, *, after: float, timeout: float = 5.0, silence_s: float = 0.1) -> float:
        """When the agent's audio stopped (last voiced frame before `silence_s` of quiet) after `after`."""
        def stopped() -> float | None:
            frames = [(at, voiced) for at, _, voiced in list(self.recording.frames) if at > after]
            voiced = [at for at, v in frames if v]
            last = voiced[-1] if voiced else after
            if frames and frames[-1][0] - last >= silence_s:
                return last
            return None

        return await self._wait_until(stopped, timeout)


def _last_voiced_sample(samples: np.ndarray, block: int = 160) -> int:
    """Index of the last sample in a voiced 10 ms block (-1 when there is none)."""
    for start in range((len(samples) - 1) // block * block, -1, -block):
        if rms(samples[start:start + block]) >= VOICED_RMS:
            return min(len(samples) - 1, start + block - 1)
    return -1


def _first_voiced_sample(samples: np.ndarray, block: int = 160) -> int:
    """Index of the first sample of the first voiced 10 ms block (-1 when there is none)."""
    for start in range(0, len(samples), block):
        if rms(samples[start:start + block]) >= VOICED_RMS:
            return start
    return -1


class EchoBot:
    """Republishes the first remote audio it hears, immediately, so a caller can time the transport."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.room = rtc.Room()
        self._tasks: list[asyncio.Task] = []
        self._source: rtc.AudioSource | None = None

    async def __aenter__(self) -> "EchoBot":
        @self.room.on("track_subscribed")
        def on_track(track: rtc.Track, _publication, _participant):
            if track.kind == rtc.TrackKind.KIND_AUDIO and not self._tasks:
                self._tasks.append(asyncio.create_task(self._echo(track)))

        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=20)
        track = rtc.LocalAudioTrack.create_audio_track("echo", self._source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        await self.room.local_participant.publish_track(track, options)
        return self

    async def _echo(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=LISTEN_FRAME_MS)
        async for event in stream:
            await self._source.capture_frame(event.frame)

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.room.disconnect()


async def measure_round_trip(caller: CallerBot, *, count: int = 5, gap_s: float = 0.6) -> list[float]:
    """Seconds from a tone's first frame sent to its echo's first frame heard, `count` times."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE)).astype(np.int16)
    await asyncio.wait_for(caller.agent_joined.wait(), 10)
    await asyncio.sleep(0.5)
    trips = []
    for _ in range(count):
        sent = await caller.play(tone)
        heard = await caller.wait_for_agent_speech(after=sent.started - 0.001, timeout=5, silence_s=0.2)
        trips.append(heard.start - sent.started)
        await asyncio.sleep(gap_s)
    return trips


async def measure_one_way(speaker: CallerBot, listener: CallerBot, *, count: int = 5, gap_s: float = 0.6) -> list[float]:
    """Seconds from a tone's first frame sent by ``speaker`` to its first frame heard by ``listener``, ``count``
    times: one leg through livekit-server, timed on the machine's one monotonic clock (both are local processes).
    Unlike an echo's round trip it holds no third participant's buffering."""
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE)).astype(np.int16)
    await asyncio.wait_for(listener.agent_joined.wait(), 10)
    await asyncio.sleep(0.5)
    legs = []
    for _ in range(count):
        sent = await speaker.play(tone)
        heard = await listener.wait_for_agent_speech(after=sent.started - 0.001, timeout=5, silence_s=0.2)
        legs.append(heard.start - sent.started)
        await asyncio.sleep(gap_s)
    return legs


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


from tests.callers.recogniser import Recogniser  # noqa: E402  (re-exported: one import for test authors)

__all__ = ["CallerBot", "Recogniser", "SpokenTiming", "Utterance", "EchoBot", "measure_one_way", "measure_round_trip", "mint_token",
           "synthesize"]
