"""A scenario call as a stereo WAV (`voxfleet eval --save-audio DIR`): left, what the caller sent (each frame of
its lines from the moment it began to play out, so a microphone that fell behind on a busy machine shows as it
really went out); right, what the caller heard (each 10 ms frame of the agent at its arrival). Sample 0 is the
moment the agent joined the room, the zero of the report's `timeline` points, so anyone can check a reported
TTFA or barge-in stop against the audio itself, in any audio editor.
"""

from __future__ import annotations

import re
import wave
from pathlib import Path

import numpy as np

from voxfleet.evaluation.scenario_call import CallTimeline

SAMPLE_RATE = 16000
MAX_SECONDS = 3600  # as long as HeardAudio keeps


def recording(timeline: CallTimeline) -> np.ndarray:
    """(samples, 2) int16: caller left, agent right, from the agent's join."""
    zero = timeline.joined
    sent = list(timeline.sent) if timeline.sent is not None else []
    heard = [(at, np.frombuffer(pcm, dtype=np.int16)) for at, pcm, _ in list(timeline.heard.frames)] \
        if timeline.heard is not None else []
    ends = [_index(at, zero) + len(samples) for at, samples in sent + heard]
    out = np.zeros((min(max(ends, default=0), MAX_SECONDS * SAMPLE_RATE), 2), dtype=np.int16)
    for channel, pieces in ((0, sent), (1, heard)):
        for at, samples in pieces:
            start = _index(at, zero)
            if start < 0 or start >= len(out):
                continue  # before the agent joined (nothing to compare with) or past the cap
            piece = samples[:len(out) - start]
            out[start:start + len(piece), channel] = piece
    return out


def write_recording(timeline: CallTimeline, directory: Path, name: str) -> Path | None:
    """`<directory>/<name>.wav` (the scenario's name, made file-safe); None when the call never started."""
    if not timeline.joined:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:100]}.wav"
    samples = recording(timeline)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return path


def _index(at: float, zero: float) -> int:
    return int(round((at - zero) * SAMPLE_RATE))
