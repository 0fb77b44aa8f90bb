"""A small scripted agent for the dev platform's own tests: a real LiveKit participant that greets, hears the end
of each caller utterance with a plain energy detector, waits a set delay, answers with eSpeak speech and
publishes both sides' transcripts the LiveKit way (text streams on ``lk.transcription``), as the worker does.

It lets the caller and the playground be tested against a real livekit-server with a known reply delay, so a
test can check that the TTFA they measure follows that delay. The platform's end-to-end test uses real workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

import numpy as np
from livekit import api, rtc

from voxfleet.devplatform import speech
from voxfleet.devplatform.heard_audio import VOICED_RMS, rms
from voxfleet.devplatform.room_transcripts import FINAL_ATTRIBUTE, SEGMENT_ATTRIBUTE, TOPIC, TRACK_ATTRIBUTE

SAMPLE_RATE = 16000
FRAME_MS = 10
END_OF_SPEECH_S = 0.2


def mint_token(url_key: str, secret: str, *, room: str, identity: str) -> str:
    return (api.AccessToken(url_key, secret).with_identity(identity).with_name(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True,
                                         can_publish_data=True)).to_jwt())


class RoomAgent:
    def __init__(self, url: str, token: str, *, greeting: str, replies: list[str], heard_texts: list[str],
                 reply_delay_s: float = 0.0):
        self.url, self.token = url, token
        self.greeting, self.replies, self.heard_texts = greeting, deque(replies), deque(heard_texts)
        self.reply_delay_s = reply_delay_s
        self.room = rtc.Room()
        self.speech_ends: list[float] = []  # when the agent decided the caller had finished
        self.reply_starts: list[float] = []  # when its reply's first frame went out
        self._source: rtc.AudioSource | None = None
        self._own_track = ""
        self._caller_track = ""
        self._tasks: list[asyncio.Task] = []
        self._speaking = asyncio.Lock()

    async def __aenter__(self) -> "RoomAgent":
        subscribed = asyncio.Event()

        @self.room.on("track_subscribed")
        def on_track(track: rtc.Track, publication: rtc.RemoteTrackPublication, _participant):
            if track.kind == rtc.TrackKind.KIND_AUDIO and not self._caller_track:
                self._caller_track = publication.sid
                self._tasks.append(asyncio.create_task(self._listen(track)))
                subscribed.set()

        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))
        self._source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=20)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", self._source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        publication = await self.room.local_participant.publish_track(track, options)
        self._own_track = publication.sid
        self._tasks.append(asyncio.create_task(self._greet(subscribed)))
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.room.disconnect()

    async def _greet(self, subscribed: asyncio.Event) -> None:
        await subscribed.wait()
        await asyncio.sleep(0.5)  # the caller's subscription to our track settles
        await self._speak(self.greeting)

    async def _listen(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=FRAME_MS)
        in_speech, quiet_since = False, 0.0
        async for event in stream:
            now = time.monotonic()
            if rms(bytes(event.frame.data)) >= VOICED_RMS:
                in_speech, quiet_since = True, 0.0
            elif in_speech:
                quiet_since = quiet_since or now
                if now - quiet_since >= END_OF_SPEECH_S:
                    in_speech = False
                    self.speech_ends.append(now)
                    self._tasks.append(asyncio.create_task(self._answer()))

    async def _answer(self) -> None:
        heard = self.heard_texts.popleft() if self.heard_texts else ""
        if heard:
            await self._transcript(heard, self._caller_track)
        await asyncio.sleep(self.reply_delay_s)
        if self.replies:
            await self._speak(self.replies.popleft())

    async def _speak(self, text: str) -> None:
        async with self._speaking:
            samples = speech.synthesize(text)
            await self._transcript(text, self._own_track)
            step = SAMPLE_RATE * 20 // 1000
            for offset in range(0, len(samples), step):
                chunk = samples[offset:offset + step]
                if len(chunk) < step:
                    chunk = np.concatenate([chunk, np.zeros(step - len(chunk), dtype=np.int16)])
                await self._source.capture_frame(rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, step))
                if offset == 0:
                    self.reply_starts.append(time.monotonic())

    async def _transcript(self, text: str, track_sid: str) -> None:
        await self.room.local_participant.send_text(text, topic=TOPIC, attributes={
            TRACK_ATTRIBUTE: track_sid, FINAL_ATTRIBUTE: "true", SEGMENT_ATTRIBUTE: f"seg-{time.monotonic_ns()}"})
