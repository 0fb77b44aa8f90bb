"""The silence a caller hears when its agent is lost, and who answered after it: judged in the room, by the audio.

A GapMeter listens beside a CallerBot (tests.callers.caller_bot) to every agent participant's audio track on its
own, so each voiced 10 ms frame is known by the identity that sent it (the CallerBot mixes them). Identities are
``vf-agent.<nonce>.<pod>`` (voxfleet.api.room_names), so "who answered" names the worker pod.

    async with CallerBot(url, token) as caller, GapMeter(caller) as meter:
        await caller.wait_for_agent_speech(timeout=30)
        pod = meter.serving_pod()
        killed_at = kill_worker(pod)                           # tests.chaos.worker_kills
        gap = await meter.gap_after(killed_at, timeout=30, not_from_pod=pod)
        print(gap.describe())                                  # 'gap 812 ms after the fault (...) answered by ...'

A Gap holds both silences: from the fault (``since_fault``: what the platform is judged on) and from the last agent
audio heard before it (``since_last_audio``: the dead air as the caller lived it, which includes whatever pause
the agent was in when the fault came). Times are ``time.monotonic()`` seconds of this process, the clock the
CallerBot and the kill use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from livekit import rtc

from voxfleet.api import room_names
from voxfleet.devplatform.heard_audio import FRAME_MS, SAMPLE_RATE, VOICED_RMS, rms

POLL_S = 0.02


@dataclass(frozen=True)
class Gap:
    fault_at: float  # when the fault was made (or any instant the caller's silence is measured from)
    last_audio_at: float | None  # the last voiced agent frame heard before the fault (None: none yet)
    heard_at: float  # the first voiced frame of the answering agent after the fault
    identity: str  # the agent participant that answered
    pod: str | None  # the worker pod its identity names

    @property
    def since_fault(self) -> float:
        return self.heard_at - self.fault_at

    @property
    def since_last_audio(self) -> float:
        return self.heard_at - (self.last_audio_at if self.last_audio_at is not None else self.fault_at)

    def describe(self) -> str:
        return (f"gap {self.since_fault * 1000:.0f} ms after the fault ({self.since_last_audio * 1000:.0f} ms after"
                f" the last agent audio), answered by pod {self.pod}")


class GapMeter:
    def __init__(self, caller, *, voiced_rms: float = VOICED_RMS):
        self.caller = caller
        self.voiced_rms = voiced_rms
        self.voiced: dict[str, list[float]] = {}  # agent identity -> arrival times of its voiced frames
        self.joined: dict[str, float] = {}  # agent identity -> when its (latest) audio track reached the caller
        self._tasks: dict[str, asyncio.Task] = {}  # by track sid
        self._streams: dict[str, rtc.AudioStream] = {}  # by track sid
        self._closing: set[asyncio.Task] = set()

    async def __aenter__(self) -> "GapMeter":
        room: rtc.Room = self.caller.room
        room.on("track_subscribed", self._on_track)
        room.on("track_unsubscribed", self._on_track_gone)
        for participant in list(room.remote_participants.values()):
            for publication in list(participant.track_publications.values()):
                if publication.track is not None:
                    self._on_track(publication.track, publication, participant)
        return self

    async def __aexit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.caller.room.off("track_subscribed", self._on_track)
            self.caller.room.off("track_unsubscribed", self._on_track_gone)
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await task
        for stream in self._streams.values():
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _on_track(self, track: rtc.Track, _publication, participant: rtc.RemoteParticipant) -> None:
        identity = participant.identity
        # By track: a restarted worker's agent comes back under the same identity, with a new track.
        if track.kind != rtc.TrackKind.KIND_AUDIO or not room_names.is_agent_identity(identity) \
                or track.sid in self._tasks:
            return
        self.joined[identity] = time.monotonic()
        self.voiced.setdefault(identity, [])
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=FRAME_MS)
        self._streams[track.sid] = stream
        self._tasks[track.sid] = asyncio.create_task(self._listen(identity, stream), name=f"gap meter {identity}")

    def _on_track_gone(self, track: rtc.Track, _publication, _participant) -> None:
        # Stop listening at once: the room's connection reuses a gone track's receiver for the next track (a
        # recovering agent's), whose audio would otherwise be counted for the departed identity too.
        task, stream = self._tasks.get(track.sid), self._streams.get(track.sid)
        if task is not None:
            task.cancel()
        if stream is not None:
            self._closing.add(closing := asyncio.get_running_loop().create_task(stream.aclose()))
            closing.add_done_callback(self._closing.discard)

    async def _listen(self, identity: str, stream: rtc.AudioStream) -> None:
        # Timed on arrival, like the CallerBot's own recording, so both speak of one clock.
        async for event in stream:
            if rms(bytes(event.frame.data)) >= self.voiced_rms:
                self.voiced[identity].append(time.monotonic())

    # --- who is on the line -----------------------------------------------------------------------------------

    def agents(self) -> list[str]:
        """Agent identities in the room now (the CallerBot's view of the room)."""
        return [p.identity for p in self.caller.room.remote_participants.values()
                if room_names.is_agent_identity(p.identity)]

    def serving_identity(self) -> str | None:
        """The agent that spoke last (or, before anyone spoke, the one that joined last)."""
        spoken = [(times[-1], identity) for identity, times in self.voiced.items() if times]
        if spoken:
            return max(spoken)[1]
        present = self.agents()
        return present[-1] if present else None

    def serving_pod(self) -> str | None:
        identity = self.serving_identity()
        return room_names.agent_identity_pod(identity) if identity else None

    def last_audio_before(self, at: float) -> float | None:
        times = [t for voiced in self.voiced.values() for t in voiced if t <= at]
        return max(times) if times else None

    # --- the gap ----------------------------------------------------------------------------------------------

    def first_audio_after(self, at: float, *, not_from_pod: str | None = None) -> tuple[float, str] | None:
        """The first voiced agent frame heard after ``at`` and its identity (a lost pod's own frames excluded:
        audio still in flight from it is not an answer)."""
        found = [(t, identity) for identity, voiced in self.voiced.items()
                 if not_from_pod is None or room_names.agent_identity_pod(identity) != not_from_pod
                 for t in voiced if t > at]
        return min(found) if found else None

    async def gap_after(self, fault_at: float, *, timeout: float, not_from_pod: str | None = None) -> Gap:
        """Wait for the first agent audio after ``fault_at`` (from another pod than ``not_from_pod`` when given):
        the caller's silence and who broke it. TimeoutError when nobody spoke within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (first := self.first_audio_after(fault_at, not_from_pod=not_from_pod)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the caller heard no agent within {timeout:.0f} s of the fault")
            await asyncio.sleep(POLL_S)
        heard_at, identity = first
        return Gap(fault_at=fault_at, last_audio_at=self.last_audio_before(fault_at), heard_at=heard_at,
                   identity=identity, pod=room_names.agent_identity_pod(identity))


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1) of a non-empty list: what a benchmark reports as p50/p95."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]
