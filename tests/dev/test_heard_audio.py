"""What a caller hears, as a timeline: utterances, silences and TTFA's end point, from 10 ms frames with arrival
times (synthetic frames: the live path is exercised in test_caller.py and the platform test)."""

from __future__ import annotations

import numpy as np

from voxfleet.devplatform.heard_audio import HeardAudio, rms

VOICE = (3000 * np.sin(np.arange(160) / 3)).astype(np.int16).tobytes()
QUIET = np.zeros(160, dtype=np.int16).tobytes()


def heard(pattern: list[tuple[float, float, bool]]) -> HeardAudio:
    """Frames every 10 ms over [start, end), voiced or quiet."""
    audio = HeardAudio()
    for start, end, voiced in pattern:
        for i in range(round((end - start) / 0.01)):
            audio.add(round(start + i * 0.01, 3), VOICE if voiced else QUIET)
    return audio


def test_an_utterance_is_its_first_to_last_voiced_frame_once_enough_quiet_follows():
    audio = heard([(0, 1, False), (1, 2, True), (2, 2.3, False)])
    assert audio.utterance_after(0.5, silence_s=0.6, now=2.3) is None  # quiet for only 0.31 s so far
    utterance = audio.utterance_after(0.5, silence_s=0.6, now=2.7)
    assert (utterance.start, utterance.end) == (1.0, 1.99)
    assert len(utterance.pcm) >= 100 * 320  # the utterance's audio comes with it


def test_pauses_shorter_than_the_silence_window_stay_inside_one_utterance_and_later_speech_is_separate():
    audio = heard([(0, 1, True), (1, 1.3, False), (1.3, 2, True), (2, 3, False), (3, 3.5, True), (3.5, 4.5, False)])
    first = audio.utterance_after(-1, silence_s=0.6, now=4.5)
    assert (first.start, first.end) == (0.0, 1.99)
    second = audio.utterance_after(2.5, silence_s=0.6, now=4.5)
    assert (second.start, second.end) == (3.0, 3.49)


def test_silence_after_reports_when_the_voice_stopped_and_waits_while_it_goes_on():
    audio = heard([(0, 1, True), (1, 1.5, False)])
    assert audio.silence_after(0.2, silence_s=0.3, now=1.5) == 0.99
    assert audio.silence_after(0.2, silence_s=0.6, now=1.5) is None
    assert audio.silence_after(5.0, silence_s=0.3, now=5.4) == 5.0  # nothing voiced since: quiet since then


def test_nothing_voiced_is_no_utterance_and_levels_are_int16_rms():
    audio = heard([(0, 2, False)])
    assert audio.utterance_after(0, now=3) is None
    assert rms(QUIET) == 0.0
    assert 2000 < rms(VOICE) < 2200  # a 3000-amplitude sine has RMS 3000/sqrt(2)
