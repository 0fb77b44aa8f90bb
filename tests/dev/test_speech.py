"""A caller's lines: eSpeak NG speech and WAV files of any PCM width/rate/channels, as 16 kHz mono int16."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from voxfleet.devplatform import speech
from voxfleet.devplatform.heard_audio import rms


def test_a_line_of_text_becomes_about_a_second_and_a_half_of_speech():
    samples = speech.synthesize("what are your opening hours")
    assert samples.dtype == np.int16
    assert 0.8 < len(samples) / speech.SAMPLE_RATE < 3.0
    assert rms(samples) > 1000


def _write(path, samples: np.ndarray, *, width: int, rate: int, channels: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_files_of_every_pcm_width_rate_and_channel_count_read_as_the_same_tone(tmp_path, width):
    rate, seconds = 44100, 0.5
    tone = np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate) * 0.5  # half scale
    if width == 1:
        data = (tone * 127 + 128).astype(np.uint8)
    elif width == 3:
        ints = (tone * (2**23 - 1)).astype(np.int32)
        data = np.frombuffer(ints.astype("<i4").tobytes(), dtype=np.uint8).reshape(-1, 4)[:, :3].copy()
    else:
        dtype = {2: "<i2", 4: "<i4"}[width]
        data = (tone * (2 ** (8 * width - 1) - 1)).astype(dtype)
    stereo = np.repeat(data.reshape(len(tone), -1), 2, axis=0).reshape(-1) if width != 3 else \
        np.concatenate([data, data], axis=1).reshape(-1)
    path = tmp_path / f"tone-{width}.wav"
    _write(path, stereo, width=width, rate=rate, channels=2)
    samples = speech.read_wav(path)
    assert abs(len(samples) - speech.SAMPLE_RATE * seconds) <= 2
    assert abs(rms(samples) - 0.5 * 32767 / np.sqrt(2)) < 0.03 * 32767  # same level, whatever the width


def test_write_then_read_keeps_the_audio_and_a_broken_file_is_refused_with_a_hint(tmp_path):
    samples = speech.synthesize("goodbye")
    path = speech.write_wav(tmp_path / "out" / "goodbye.wav", samples)
    assert np.array_equal(speech.read_wav(path), samples)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"ID3 this is an mp3, not a wav")
    with pytest.raises(ValueError, match="not a PCM WAV file.*sox"):
        speech.read_wav(broken)
