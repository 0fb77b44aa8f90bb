"""The agent's audio as a caller hears it: 10 ms frames with their play-out times, each marked voiced or not.

Frames are timed by a play-out clock (their count since the stream began, anchored on the least-delayed
arrival), so a busy caller process does not make the agent look slow. Everything a caller measures comes from
here: when the agent started and stopped speaking (TTFA is the time from the end of the caller's speech to the
first voiced frame heard after it), what it said (the PCM of an utterance, for a recogniser or a WAV file).
Times are ``time.monotonic()`` seconds of the listening process.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

SAMPLE_RATE = 16000
FRAME_MS = 10
# int16 RMS: speech is in the thousands, Opus silence and comfort noise stay far below this.
VOICED_RMS = 300.0
MAX_RECORD_SECONDS = 3600
POLL_S = 0.02

T = TypeVar("T")


def rms(pcm: bytes | np.ndarray) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, (bytes, bytearray, memoryview)) else pcm
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float32) ** 2)))


@dataclass(frozen=True)
class Utterance:
    """One stretch of agent speech: first and last voiced frame heard, and the audio between them."""
    start: float
    end: float
    pcm: bytes

    @property
    def duration(self) -> float:
        return self.end - self.start


class HeardAudio:
    def __init__(self, *, voiced_rms: float = VOICED_RMS, max_seconds: int = MAX_RECORD_SECONDS):
        self.voiced_rms = voiced_rms
        self.frames: deque[tuple[float, bytes, bool]] = deque(maxlen=max_seconds * 1000 // FRAME_MS)

    # --- recording -------------------------------------------------------------------------------------------

    def add(self, at: float, pcm: bytes) -> None:
        self.frames.append((at, pcm, rms(pcm) >= self.voiced_rms))

    # --- reading ---------------------------------------------------------------------------------------------

    def voiced_times(self, since: float = 0.0) -> list[float]:
        return [at for at, _, voiced in list(self.frames) if voiced and at > since]

    def audio(self, since: float = float("-inf"), until: float = float("inf")) -> bytes:
        return b"".join(pcm for at, pcm, _ in list(self.frames) if since <= at <= until)

    def utterance_after(self, after: float, *, silence_s: float = 0.6, now: float | None = None) -> Utterance | None:
        """The first agent speech that starts after ``after`` and is followed by ``silence_s`` of quiet (quiet
        lasts until ``now``: a sender that stops sending frames is quiet too)."""
        voiced = self.voiced_times(after)
        if not voiced:
            return None
        start = last = voiced[0]
        for at in voiced[1:]:
            if at - last >= silence_s:
                break  # a later utterance: this one ended at ``last``
            last = at
        else:
            if _now(now) - last < silence_s:
                return None  # still speaking, or not quiet long enough yet
        return Utterance(start=start, end=last, pcm=self.audio(start - 0.05, last + 0.05))

    def silence_after(self, after: float, *, silence_s: float = 0.1, now: float | None = None) -> float | None:
        """The last voiced frame before ``silence_s`` of quiet, after ``after`` (``after`` if there was none)."""
        voiced = self.voiced_times(after)
        last = voiced[-1] if voiced else after
        return last if _now(now) - last >= silence_s else None

    # --- waiting ---------------------------------------------------------------------------------------------

    async def wait_for(self, probe: Callable[[], T | None], *, timeout: float, what: str) -> T:
        """Call ``probe`` until it returns something; TimeoutError names ``what``. Polling is enough: the answer
        comes from the frames' arrival times, so how soon we look changes no measurement."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"heard no {what} within {timeout:.1f} s")
            await asyncio.sleep(POLL_S)


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now
