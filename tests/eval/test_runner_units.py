"""Pieces of the runner that need no platform: where the gateway URL and key come from (a running `voxfleet dev`,
the environment, the command line), and the fallback for agents that return no transcripts: what the caller
heard, recognised locally."""

from __future__ import annotations

import time

import numpy as np

from voxfleet.devplatform import speech
from voxfleet.devplatform.dev_state import DevState, gateway_and_key
from voxfleet.devplatform.heard_audio import HeardAudio
from voxfleet.evaluation import eval_cli
from voxfleet.evaluation.agent_speech import Window, mentions, speech_in
from voxfleet.evaluation.eval_sessions import EvalResults
from voxfleet.evaluation.scenario_call import CallTimeline
from voxfleet.evaluation.scenario_models import Scenario


def _flags(**overrides) -> dict:
    return {"gateway": None, "key": None, "dev_dir": None, **overrides}


def test_gateway_and_key_come_from_a_running_voxfleet_dev(tmp_path, monkeypatch):
    monkeypatch.delenv("VOXFLEET_API_KEY", raising=False)
    monkeypatch.delenv("VOXFLEET_GATEWAY_URL", raising=False)
    state = DevState(dev_dir=str(tmp_path), world_dir=str(tmp_path / "world"), world_id="w", supervisor_pid=1,
                     gateway_url="http://127.0.0.1:8123")
    state.save()
    state.save_api_key("vfk_from_dev")
    assert gateway_and_key(**_flags(dev_dir=tmp_path)) == ("http://127.0.0.1:8123", "vfk_from_dev")
    monkeypatch.setenv("VOXFLEET_API_KEY", "vfk_from_env")
    assert gateway_and_key(**_flags(dev_dir=tmp_path)) == ("http://127.0.0.1:8123", "vfk_from_env")
    assert gateway_and_key(**_flags(dev_dir=tmp_path, gateway="https://gw.example", key="vfk_flag")) == (
        "https://gw.example", "vfk_flag")


def test_without_dev_or_environment_the_default_gateway_and_no_key(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VOXFLEET_API_KEY", raising=False)
    monkeypatch.setenv("VOXFLEET_GATEWAY_URL", "http://gw.internal:8000")
    assert gateway_and_key(**_flags(dev_dir=tmp_path / "none")) == ("http://gw.internal:8000", None)
    suite = tmp_path / "s.yaml"
    suite.write_text("agent: concierge\nscenarios: [{name: a, turns: [{say: hello}]}]\n")
    assert eval_cli.main([str(suite), "--dev-dir", str(tmp_path / "none")]) == 2
    assert "no API key" in capsys.readouterr().err


def test_agents_without_transcripts_are_judged_from_recognised_audio():
    heard = HeardAudio()
    start = time.monotonic()
    pcm = speech.synthesize("Order one two three four is being packed.")
    pcm = np.concatenate([np.zeros(1600, dtype=np.int16), pcm, np.zeros(3200, dtype=np.int16)])
    for index, offset in enumerate(range(0, len(pcm) - 160, 160)):
        heard.add(start + index * 0.01, pcm[offset:offset + 160].tobytes())
    timeline = CallTimeline(scenario=Scenario(name="s", turns=[{"say": "x"}]), heard=heard,
                            results=EvalResults(None, "transcripts_disabled", "no transcripts"))
    said = speech_in(timeline, Window(start, start + len(pcm) / 16000), recognise=True)
    assert said.source == "recognised"
    assert mentions(said.agent_text, "1234"), said.agent_text  # "one two three four" as the caller heard it
    assert speech_in(timeline, Window(start, start + 5), recognise=False).source == "none"


def _timeline_with_stalled_reply(answer_after_s: float) -> tuple[CallTimeline, float]:
    """The caller finished at t0; agent audio came 0.1-0.9 s later (an earlier reply's stalled tail), then again
    from 3.0 s; the worker says it began answering the line ``answer_after_s`` after t0."""
    from voxfleet.api.eval_record import EvalLatency, SessionEvalRecord
    from voxfleet.evaluation.scenario_call import TurnTimeline

    heard = HeardAudio()
    t0 = time.monotonic()
    voiced = (3000 * np.sin(np.arange(160) / 3)).astype(np.int16).tobytes()
    silent = np.zeros(160, dtype=np.int16).tobytes()
    for n in range(500):
        at = t0 + n * 0.01
        heard.add(at, voiced if 0.1 <= at - t0 < 0.9 or 3.0 <= at - t0 < 4.0 else silent)
    timeline = CallTimeline(scenario=Scenario(name="s", turns=[{"say": "x"}]), heard=heard, joined=t0 - 5,
                            ended=t0 + 5)
    timeline.turns = [TurnTimeline(index=1, said="x", started=t0 - 1.3, voice_ended=t0, reply_start=t0 + 0.1,
                                   reply_end=t0 + 0.89, ended=t0 + 5)]
    record = SessionEvalRecord(session_id="sess-12345678", complete=True,
                               agent_ttfa=[EvalLatency(at=timeline.wall(t0 + answer_after_s), seconds=0.6)])
    timeline.results = EvalResults(record, "returned")
    return timeline, t0


def test_audio_heard_before_the_worker_answered_is_not_the_reply():
    from voxfleet.evaluation.expectations import judge
    from voxfleet.evaluation.scenario_models import RunDefaults

    timeline, _ = _timeline_with_stalled_reply(answer_after_s=2.9)
    [turn] = judge(timeline, RunDefaults()).turns
    assert turn.agent_was_talking and turn.agent_ttfa_ms == 600.0
    assert 2990 <= turn.ttfa_ms <= 3010 and 980 <= turn.reply_ms <= 1000

    timeline, _ = _timeline_with_stalled_reply(answer_after_s=0.05)  # the audio was this line's answer after all
    [turn] = judge(timeline, RunDefaults()).turns
    assert not turn.agent_was_talking and 95 <= turn.ttfa_ms <= 105
