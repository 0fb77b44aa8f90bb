"""Callers for tests and benchmarks: the product's Caller (voxfleet.devplatform.caller, re-exported here as
CallerBot) plus what only tests need: LiveKit tokens minted with the dev secret, an echo participant, and
transport timing.

It judges an agent the way a person on the line would: by the audio in the room, never by the agent's logs.

    from tests.callers.caller_bot import CallerBot, Recogniser, measure_one_way, mint_token

    token = mint_token(region, room="r1", identity="caller-1")          # region: world LiveKitRegion
    async with CallerBot(region.url, token) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=10)       # Utterance(start, end, pcm)
        spoken = await caller.say("what are your opening hours")        # SpokenTiming(started, voice_ended)
        answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)
        ttfa = answer.start - spoken.voice_ended                        # TTFA as the caller hears it
        text = Recogniser(["we are open every day ..."]).recognise(answer.pcm)

See devplatform/caller.py for the Caller's API and its clocks (play-out time both ways). Recognise recordings
after the timed part of a test: decoding blocks the event loop (and so the microphone) for about a second per
utterance.
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
import uuid

import numpy as np
from livekit import api, rtc

from voxfleet.devplatform.caller import Caller as CallerBot
from voxfleet.devplatform.caller import SpokenTiming
from voxfleet.devplatform.heard_audio import Utterance
from voxfleet.devplatform.speech import synthesize

SAMPLE_RATE = 16000
LISTEN_FRAME_MS = 10
# Now and then LiveKit's Python SDK leaves without its Leave request reaching the server (seen: the server closed
# the caller with PEER_CONNECTION_DISCONNECTED 20.5 s after the client's close). The server then keeps the caller
# in the room until its transport times out, and only then tells the agent and the webhooks: anything that waits
# for a caller to be gone ("caller-left", participant_left) must allow this long.
CALLER_GONE_S = 35.0


def mint_token(region=None, *, room: str, identity: str, url: str | None = None, api_key: str | None = None,
               api_secret: str | None = None, ttl_s: int = 3600) -> str:
    key = api_key or region.api_key
    secret = api_secret or region.api_secret
    from datetime import timedelta

    return (api.AccessToken(key, secret).with_identity(identity).with_name(identity)
            .with_grants(api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True))
            .with_ttl(timedelta(seconds=ttl_s)).to_jwt())


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
    return await measure_one_way(caller, caller, count=count, gap_s=gap_s)


async def measure_one_way(speaker: CallerBot, listener: CallerBot, *, count: int = 5,
                          gap_s: float = 0.6) -> list[float]:
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


async def measure_two_legs(region, *, count: int = 10, gap_s: float = 0.5) -> list[float]:
    """The transport a caller's TTFA holds on top of the agent's own time (caller -> agent, agent -> caller):
    twice a one-way leg, measured between two participants in a fresh room of ``region``'s livekit-server."""
    room = f"legs-{uuid.uuid4().hex[:8]}"
    async with CallerBot(region.url, mint_token(region, room=room, identity="speaker")) as speaker, \
            CallerBot(region.url, mint_token(region, room=room, identity="listener")) as listener:
        return [2 * leg for leg in await measure_one_way(speaker, listener, count=count, gap_s=gap_s)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


from tests.callers.recogniser import Recogniser  # noqa: E402  (re-exported: one import for test authors)

__all__ = ["CALLER_GONE_S", "CallerBot", "Recogniser", "SpokenTiming", "Utterance", "EchoBot", "measure_one_way",
           "measure_round_trip", "measure_two_legs", "mint_token", "synthesize"]
