"""The barge-in check and the call recording, without a platform: a barge-in is timed from the caller's voice
onset (not the first frame of a WAV that opens with silence) to the agent's audio going quiet, against
`stopWithinMs` (default 300, the goal); the reported figure is the measured one. The recording lays the caller's
lines and the agent's heard frames on the report's timeline."""

from __future__ import annotations

import time
import wave
from collections import deque

import numpy as np
import pytest

from voxfleet.devplatform.heard_audio import HeardAudio
from voxfleet.evaluation.call_recording import SAMPLE_RATE, write_recording
from voxfleet.evaluation.expectations import judge
from voxfleet.evaluation.scenario_call import BargeInTimeline, CallTimeline, TurnTimeline
from voxfleet.evaluation.scenario_models import BargeIn, RunDefaults, Scenario

VOICED = (3000 * np.sin(np.arange(160) / 3)).astype(np.int16)
SILENT = np.zeros(160, dtype=np.int16)


def _call(agent_quiet_after_onset_s: float, *, lead_silence_s: float = 0.4, within: int | None = None):
    """The agent's reply is heard from t0 for 3 s; the caller's barge-in WAV starts at t0 + 1.0 with
    `lead_silence_s` of silence, and the agent goes quiet `agent_quiet_after_onset_s` after the voice began."""
    t0 = time.monotonic()
    onset = t0 + 1.0 + lead_silence_s
    heard = HeardAudio()
    for n in range(600):
        at = t0 + n * 0.01
        heard.add(at, (VOICED if at < onset + agent_quiet_after_onset_s else SILENT).tobytes())
    barge_in = {"atMs": 1000, "say": "stop"} | ({"stopWithinMs": within} if within else {})
    scenario = Scenario(name="barge", turns=[{"say": "hours", "bargeIn": barge_in,
                                              "expect": {"stopsWhenInterrupted": True}}])
    timeline = CallTimeline(scenario=scenario, heard=heard, joined=t0 - 2.0, ended=t0 + 6)
    barge = BargeInTimeline(said="stop", planned=t0 + 1.0, started=t0 + 1.0, voice_started=onset,
                            voice_ended=onset + 0.5, agent_was_speaking=True,
                            agent_last_voice=onset + agent_quiet_after_onset_s - 0.01)
    timeline.turns = [TurnTimeline(index=1, said="hours", started=t0 - 1.0, voice_ended=t0 - 0.3, reply_start=t0,
                                   reply_end=barge.agent_last_voice, barge_in=barge, ended=t0 + 6)]
    return timeline


def _stopped(timeline: CallTimeline):
    [turn] = judge(timeline, RunDefaults()).turns
    return turn, next(e for e in turn.expectations if e.kind == "stopsWhenInterrupted")


def test_the_default_bound_is_the_300_ms_goal() -> None:
    assert BargeIn(atMs=0, say="stop").stop_within_ms == 300


def test_a_stop_is_timed_from_the_callers_voice_onset_and_reported() -> None:
    # 0.4 s of silence opens the WAV: timed from the first frame, this 250 ms stop would read 650 ms and fail.
    turn, check = _stopped(_call(0.25))
    assert check.passed, check.message
    assert 235 <= turn.barge_in.agent_stopped_after_ms <= 245, turn.barge_in
    assert check.actual == f"stopped after {turn.barge_in.agent_stopped_after_ms:.0f} ms"
    assert 1395 <= turn.barge_in.started_after_reply_ms <= 1405  # the voice onset, after the reply's first audio
    assert 1.4 <= turn.timeline["bargeIn"] - turn.timeline["reply"] <= 1.41


def test_a_slow_stop_fails_the_default_bound_with_the_measured_figure() -> None:
    turn, check = _stopped(_call(0.59))
    assert not check.passed
    assert check.message.startswith(f"the agent kept talking for {turn.barge_in.agent_stopped_after_ms:.0f} ms"
                                    " after the caller's voice began") and "stop within 300 ms" in check.message
    _, lenient = _stopped(_call(0.59, within=1000))
    assert lenient.passed, lenient.message


@pytest.mark.parametrize("bad", [99, 10001, -1, "300ms"])
def test_hostile_stop_bounds_are_refused(bad) -> None:
    with pytest.raises(ValueError):
        BargeIn(atMs=0, say="stop", stopWithinMs=bad)


def test_the_recording_puts_both_sides_on_the_reports_timeline(tmp_path) -> None:
    timeline = _call(0.25)
    line, barge = timeline.turns[0], timeline.turns[0].barge_in
    # The caller's microphone, frame by frame (20 ms): the line from `started`, the barge-in's WAV (0.4 s of
    # silence, then voice) from its `started`.
    line_frames = [np.full(320, 2000, dtype=np.int16)] * 25
    barge_frames = [np.zeros(320, dtype=np.int16)] * 20 + [np.full(320, 2000, dtype=np.int16)] * 25
    timeline.sent = deque([(line.started + n * 0.02, frame) for n, frame in enumerate(line_frames)]
                          + [(barge.started + n * 0.02, frame) for n, frame in enumerate(barge_frames)])
    path = write_recording(timeline, tmp_path, "barge in/../x")
    assert path is not None and path.parent == tmp_path
    with wave.open(str(path), "rb") as recording:
        assert (recording.getnchannels(), recording.getframerate()) == (2, SAMPLE_RATE)
        samples = np.frombuffer(recording.readframes(recording.getnframes()), dtype=np.int16).reshape(-1, 2)
    zero = timeline.joined
    def at(moment: float) -> int:
        return round((moment - zero) * SAMPLE_RATE)

    caller, agent = samples[:, 0], samples[:, 1]
    assert np.flatnonzero(caller)[0] == at(line.started)  # the caller's line, where the report puts "spoke"
    voiced_barge = np.flatnonzero(caller[at(barge.started):])[0] + at(barge.started)
    assert abs(voiced_barge - at(barge.voice_started)) <= 1  # its voice onset, after the WAV's silence
    first_agent = np.flatnonzero(np.abs(agent) > 0)[0]
    assert abs(first_agent - at(line.reply_start)) <= 2  # the agent's first frame heard, where "reply" is
    assert write_recording(CallTimeline(scenario=timeline.scenario), tmp_path, "never-joined") is None
