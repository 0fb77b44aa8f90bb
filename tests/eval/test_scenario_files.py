"""Scenario files: the checked-in JSON Schema is what the models generate, the shipped suites are valid and call
agents the examples define, and broken files are refused before any call, naming the place and the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import yaml

from voxfleet.devplatform import speech
from voxfleet.evaluation import eval_cli
from voxfleet.evaluation.scenario_schema import SCHEMA_PATH, render, suite_schema
from voxfleet.evaluation.suite_loader import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[2]
SUITES = sorted((REPO / "examples" / "scenarios").glob("*.yaml"))
MINIMAL = {"agent": "concierge", "scenarios": [{"name": "hello", "turns": [{"say": "hello"}]}]}


def _write(tmp_path: Path, document, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def _with_turn(**turn) -> dict:
    return {"agent": "concierge", "scenarios": [{"name": "s", "turns": [turn]}]}


def test_the_checked_in_schema_is_what_the_models_generate():
    assert SCHEMA_PATH.read_text() == render(), "stale: run python -m voxfleet.evaluation.scenario_schema"
    result = subprocess.run([sys.executable, "-m", "voxfleet.evaluation.scenario_schema", "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_schema_is_valid_json_schema_and_printed_by_the_cli(capsys):
    jsonschema.Draft202012Validator.check_schema(suite_schema())
    assert eval_cli.main(["--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(SCHEMA_PATH.read_text())


def _example_agents() -> set[str]:
    names = set()
    for path in (REPO / "examples").glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "VoiceAgent":
                names.add(document["metadata"]["name"])
    return names


def test_every_example_agent_ships_a_suite_and_every_suite_is_valid():
    assert SUITES, "examples/scenarios/ has no suites"
    validator = jsonschema.Draft202012Validator(suite_schema())
    agents = set()
    for path in SUITES:
        loaded = load_suite(path)
        agents.add(loaded.suite.agent)
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
        assert path.read_text().startswith(
            "# yaml-language-server: $schema=../../evaluation/scenario-suite.schema.json")
    assert agents == _example_agents()


@pytest.mark.parametrize("document, where, problem", [
    (_with_turn(say="hi", wav="a.wav"), "scenarios[0].turns[0]", "exactly one of say and wav"),
    (_with_turn(), "scenarios[0].turns[0]", "exactly one of say and wav"),
    (_with_turn(say="hi", expect={"stopsWhenInterrupted": True}), "scenarios[0].turns[0]",
     "stopsWhenInterrupted needs a bargeIn"),
    (_with_turn(say="hi", expect={"mention": ["nine"]}), "scenarios[0].turns[0].expect.mention",
     "Extra inputs are not permitted"),
    (_with_turn(say="hi", expect={"mentions": ["Nine"], "notMentions": ["nine"]}), "scenarios[0].turns[0].expect",
     "appear in both mentions and notMentions"),
    (_with_turn(say="hi", expect={"mentions": ["  "]}), "scenarios[0].turns[0].expect.mentions[0]",
     "should match pattern"),
    (_with_turn(say="hi", expect={"toolCalls": [{"name": "look up"}]}),
     "scenarios[0].turns[0].expect.toolCalls[0].name", "should match pattern"),
    (_with_turn(say="hi", expect={"toolCalls": [{"name": "t"}], "noToolCalls": True}),
     "scenarios[0].turns[0].expect", "noToolCalls contradicts toolCalls"),
    (_with_turn(say="hi", bargeIn={"atMs": -5, "say": "stop"}), "scenarios[0].turns[0].bargeIn.atMs",
     "greater than or equal to 0"),
    (_with_turn(say="x" * 501), "scenarios[0].turns[0].say", "at most 500 characters"),
    ({"agent": "Not_A_Name", "scenarios": MINIMAL["scenarios"]}, "agent", "should match pattern"),
    ({"agent": "concierge", "scenarios": []}, "scenarios", "at least 1 item"),
    ({"agent": "concierge", "scenarios": MINIMAL["scenarios"] * 2}, "(top level)", "'hello' appears twice"),
    ({"scenarios": MINIMAL["scenarios"]}, "agent", "Field required"),
    ({**MINIMAL, "tolerances": {"turnSuccessRateDrop": 2}}, "tolerances.turnSuccessRateDrop",
     "less than or equal to 1"),
])
def test_invalid_suites_are_refused_naming_the_field(tmp_path, document, where, problem):
    with pytest.raises(SuiteError) as refused:
        load_suite(_write(tmp_path, document))
    message = str(refused.value)
    assert f"{where}: " in message and problem in message, message


@pytest.mark.parametrize("text, problem", [
    ("agent: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "a mapping with `agent:` and `scenarios:`"),
    ("agent: x\n" + "#" * (1 << 20), "larger than 1024 KiB"),
])
def test_unreadable_files_are_refused(tmp_path, text, problem):
    with pytest.raises(SuiteError, match=problem):
        load_suite(_write(tmp_path, text))


def test_wav_turns_are_resolved_beside_the_suite_and_checked_up_front(tmp_path):
    spoken = speech.synthesize("what are your opening hours")
    (tmp_path / "audio").mkdir()
    speech.write_wav(tmp_path / "audio" / "hours.wav", spoken)
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF....not a wave file")
    good = _write(tmp_path, _with_turn(wav="audio/hours.wav", bargeIn={"atMs": 300, "say": "stop"}))
    loaded = load_suite(good)
    turn = loaded.suite.scenarios[0].turns[0]
    assert np.array_equal(loaded.audio_for(turn), spoken)
    stop = loaded.audio_for(turn.barge_in)  # eSpeak at the suite's voice and rate, synthesised once per suite
    assert stop is loaded.audio_for(turn.barge_in)
    assert abs(len(stop) - len(speech.synthesize("stop", voice="en-us", rate=175))) < 160

    with pytest.raises(SuiteError) as refused:
        load_suite(_write(tmp_path, {"agent": "concierge", "scenarios": [{"name": "s", "turns": [
            {"wav": "audio/missing.wav"}, {"wav": "audio/broken.wav"}]}]}, "bad.yaml"))
    message = str(refused.value)
    assert "audio/missing.wav: no such file" in message
    assert "audio/broken.wav: " in message and "not a PCM WAV file" in message


def test_the_cli_checks_a_suite_without_calling_and_exits_2_on_problems(tmp_path, capsys):
    assert eval_cli.main(["--check", str(SUITES[0])]) == 0
    assert "valid" in capsys.readouterr().out
    assert eval_cli.main(["--check", str(_write(tmp_path, _with_turn(say="hi", wav="a.wav")))]) == 2
    assert "exactly one of say and wav" in capsys.readouterr().err
    assert eval_cli.main(["--check", str(SUITES[0]), "--scenario", "no-such-scenario"]) == 2
    assert "no scenario named no-such-scenario" in capsys.readouterr().err
