"""What a caller says: a line of text spoken by eSpeak NG (local, no network), or a WAV file, as 16 kHz mono int16.

eSpeak comes from the worker's wrapper around the espeakng-loader wheel (one synthesiser per process); a WAV
of any PCM width, channel count and rate is mixed down and resampled with soxr.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 16000
MAX_WAV_SECONDS = 600  # a caller's script, not an audiobook: refuse files that would fill memory


def synthesize(text: str, *, voice: str = "en-us", rate: int = 175, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A line of text spoken by eSpeak NG, as int16 samples at ``sample_rate``."""
    from voxfleet.worker.providers.espeak_voice import ESpeakVoice

    engine = ESpeakVoice.shared()
    pcm = np.frombuffer(engine.synthesize_pcm(text, voice=voice, rate=rate), dtype=np.int16)
    return resample(pcm, engine.sample_rate, sample_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return samples.astype(np.int16, copy=False)
    return soxr.resample(samples, from_rate, to_rate).astype(np.int16)


def read_wav(path: Path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A PCM WAV file as mono int16 at ``sample_rate``; ValueError says what is wrong with a file we can't use."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate, count = (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(),
                                            wav.getnframes())
            if count > MAX_WAV_SECONDS * rate:
                raise ValueError(f"{path} is longer than {MAX_WAV_SECONDS} s")
            raw = wav.readframes(count)
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path} is not a PCM WAV file ({error}); convert it, e.g. "
                         f"sox in.mp3 -r 16000 -c 1 -b 16 out.wav") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.int32)
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((bytes3[:, 0] << 8) | (bytes3[:, 1] << 16) | (bytes3[:, 2] << 24)) >> 16
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
    return resample(np.clip(mono, -32768, 32767).astype(np.int16), rate, sample_rate)


def write_wav(path: Path, samples: np.ndarray | bytes, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Mono 16-bit PCM WAV (what `voxfleet call --save` writes and Chromium's fake microphone reads)."""
    data = samples.tobytes() if isinstance(samples, np.ndarray) else bytes(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(data)
    return path
