"""Simulated callers without a call: the persona script's branching, the LLM caller against the local
OpenAI-compatible fake (the real client and wire protocol), and scenario files refused with the field named."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from tests.fakes.openai_server import Script, start_fake_openai
from voxfleet.evaluation.caller_script import CallerLine, Exchange, ScriptedCaller
from voxfleet.evaluation.llm_caller import LLMCaller, chat_messages, parse_reply
from voxfleet.evaluation.llm_endpoint import LLMEndpointError
from voxfleet.evaluation.llm_keys import LLMKeyError, read_api_key
from voxfleet.evaluation.report_models import RunReport, ScenarioResult, SimulatedCallerResult, summarise
from voxfleet.evaluation.scenario_models import OpenAIBrain, ScriptedBrain, SimulatedCaller
from voxfleet.evaluation.suite_loader import SuiteError, load_suite

SCRIPT = {"kind": "scripted", "opening": "where is my order",
          "rules": [{"whenAgentSays": ["details", "order number"], "say": "my order is one two three four"},
                    {"whenAgentSays": ["goodbye"], "say": "bye", "hangUp": True}],
          "fallback": "sorry?", "hangUp": "thank you goodbye"}
CALLER = {"persona": "A customer in a hurry.",
          "goal": {"description": "Learn the status of order 1234.",
                   "toolCalls": [{"name": "lookup_order", "arguments": {"order_id": "1234"}}]},
          "brain": SCRIPT}
KEY = "sk-unit-test-key-9876543210"


def _line(brain: dict, *conversation: tuple[str, str]) -> CallerLine | None:
    caller = ScriptedCaller(ScriptedBrain.model_validate(brain))
    heard = [Exchange(role, text) for role, text in conversation]  # type: ignore[arg-type]
    return asyncio.run(caller.next_line(heard))


def test_the_script_opens_then_branches_on_what_the_agent_just_said():
    assert _line(SCRIPT) == CallerLine("where is my order", because="opening line")
    assert _line(SCRIPT, ("agent", "Hello, this is the demo line.")).text == "where is my order"  # greeting only
    asked = _line(SCRIPT, ("caller", "where is my order"),
                  ("agent", "Sorry, I didn't get all the DETAILS I need for that."))
    assert asked == CallerLine("my order is one two three four", because="rule 1: the agent said 'details'")
    # Phrases are whole words in order: "order numbers" is not "order number", "detailsx" is not "details".
    assert _line(SCRIPT, ("caller", "x"), ("agent", "detailsx and order numbers")).text == "sorry?"
    assert _line(SCRIPT, ("caller", "x"), ("agent", "what is your order number?")).because.startswith("rule 1")
    # Only the agent's last words count: an earlier 'details' does not answer a later 'goodbye'.
    bye = _line(SCRIPT, ("caller", "x"), ("agent", "details"), ("caller", "y"), ("agent", "Goodbye!"))
    assert bye == CallerLine("bye", hang_up_after=True, because="rule 2: the agent said 'goodbye'")


def test_an_interrupting_line_carries_its_interruption():
    cut_in = {"say": "thank you goodbye", "atMs": 600}
    brain = {**SCRIPT, "openingInterrupt": cut_in,
             "rules": [{"whenAgentSays": ["details"], "say": "one two", "interrupt": {**cut_in, "stopWithinMs": 500}}]}
    opening = _line(brain)
    assert opening.interrupt is not None and (opening.interrupt.say, opening.interrupt.at_ms) == ("thank you goodbye",
                                                                                                  600)
    barge = _line(brain, ("caller", "x"), ("agent", "the details please")).interrupt.as_barge_in()
    assert (barge.say, barge.at_ms, barge.stop_within_ms) == ("thank you goodbye", 600, 500)
    assert _line(SCRIPT).interrupt is None


def test_the_first_matching_rule_wins_and_no_fallback_means_hanging_up():
    brain = {**SCRIPT, "fallback": None,
             "rules": [{"whenAgentSays": ["order"], "say": "first"}, {"whenAgentSays": ["order"], "say": "second"}]}
    assert _line(brain, ("caller", "x"), ("agent", "your order")).text == "first"
    assert _line(brain, ("caller", "x"), ("agent", "something else")) is None
    assert asyncio.run(ScriptedCaller(ScriptedBrain.model_validate(SCRIPT)).closing_line()) == "thank you goodbye"


def test_digits_match_as_spoken_or_written_and_patterns_are_plain_words():
    brain = {**SCRIPT, "rules": [{"whenAgentSays": ["order 1234"], "say": "yes"},
                                 {"whenAgentSays": ["(a+)+$"], "say": "regex"}]}
    assert _line(brain, ("caller", "x"), ("agent", "your order one two three four ships")).text == "yes"
    # A regex-looking phrase is its words ("a"), never a pattern run against the agent's speech.
    assert _line(brain, ("caller", "x"), ("agent", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")).text == "sorry?"
    assert _line(brain, ("caller", "x"), ("agent", "a")).text == "regex"


@pytest.mark.parametrize("text, line", [
    ("Where is my order 1234?", CallerLine("Where is my order 1234?", because="the LLM's next line")),
    ("DONE", None),
    ("  done. ", None),
    ("", None),
    ("Thanks, that is all. DONE", CallerLine("Thanks, that is all.", hang_up_after=True,
                                             because="the LLM said its goal is reached")),
    ("x" * 900, CallerLine("x" * 500, because="the LLM's next line")),
])
def test_the_llms_reply_becomes_a_line_or_a_hang_up(text, line):
    assert parse_reply(text) == line


def _llm_caller(fake_url: str) -> SimulatedCaller:
    return SimulatedCaller.model_validate({**CALLER, "brain": {"kind": "openai", "baseUrl": fake_url,
                                                               "model": "caller-model", "apiKeyEnv": "CALLER_API_KEY"}})


def test_the_llm_caller_speaks_the_real_protocol_with_persona_goal_and_conversation():
    fake = start_fake_openai(script=Script(reply="My order number is 1234."), api_key=KEY)
    try:
        caller = LLMCaller(_llm_caller(fake.url), KEY)

        async def talk():
            try:
                return await caller.next_line([Exchange("agent", "Hello, how can I help?"),
                                               Exchange("caller", "where is my order"),
                                               Exchange("agent", "Which order number?")])
            finally:
                await caller.aclose()

        line = asyncio.run(talk())
    finally:
        fake.stop()
    assert line == CallerLine("My order number is 1234.", because="the LLM's next line")
    [request] = fake.requests
    assert request["model"] == "caller-model" and request["temperature"] == 0.3
    system, *rest = request["messages"]
    assert "A customer in a hurry." in system["content"] and "Learn the status of order 1234." in system["content"]
    assert "DONE" in system["content"]
    assert [(m["role"], m["content"]) for m in rest] == [
        ("user", "Hello, how can I help?"), ("assistant", "where is my order"), ("user", "Which order number?")]
    assert fake.headers[0]["Authorization"] == f"Bearer {KEY}"


def test_a_refused_key_is_reported_without_the_key():
    fake = start_fake_openai(api_key="sk-the-right-one")
    try:
        caller = LLMCaller(_llm_caller(fake.url), KEY)

        async def talk():
            try:
                return await caller.next_line([])
            finally:
                await caller.aclose()

        with pytest.raises(LLMEndpointError) as failed:
            asyncio.run(talk())
    finally:
        fake.stop()
    assert "HTTP 401" in str(failed.value) and KEY not in str(failed.value)


def test_without_a_greeting_the_llm_is_told_the_call_connected():
    messages = chat_messages(_llm_caller("http://127.0.0.1:1/v1"), [])
    assert [m["role"] for m in messages] == ["system", "user"] and "connected" in messages[1]["content"]


def test_the_key_comes_from_the_named_variable_or_file(tmp_path, monkeypatch):
    caller = _llm_caller("http://127.0.0.1:1/v1")
    monkeypatch.delenv("CALLER_API_KEY", raising=False)
    with pytest.raises(LLMKeyError, match="apiKeyEnv: the environment variable CALLER_API_KEY is not set"):
        read_api_key(caller.brain, tmp_path)
    monkeypatch.setenv("CALLER_API_KEY", f" {KEY}\n")
    assert read_api_key(caller.brain, tmp_path) == KEY
    (tmp_path / "key.txt").write_text(KEY + "\n")
    from_file = caller.brain.model_copy(update={"api_key_env": None, "api_key_file": "key.txt"})
    assert read_api_key(from_file, tmp_path) == KEY
    with pytest.raises(LLMKeyError, match="caller.brain.apiKeyFile: cannot read"):
        read_api_key(from_file.model_copy(update={"api_key_file": "missing.txt"}), tmp_path)


def _suite(tmp_path: Path, caller: dict, **scenario) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"agent": "concierge", "scenarios": [{"name": "s", "caller": caller, **scenario}]}))
    return path


OPENAI = {"kind": "openai", "baseUrl": "https://api.example.com/v1", "model": "m", "apiKeyEnv": "K_API_KEY"}


def test_a_key_file_linked_out_of_the_suite_folder_is_not_read(tmp_path):
    secret = tmp_path / "elsewhere" / "credentials"
    secret.parent.mkdir()
    secret.write_text("not-for-the-caller")
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    (suite_dir / "key.txt").symlink_to(secret)
    brain = OpenAIBrain.model_validate({**{k: v for k, v in OPENAI.items() if k != "apiKeyEnv"},
                                        "apiKeyFile": "key.txt"})
    with pytest.raises(LLMKeyError, match="leads out of the scenario file's folder") as refused:
        read_api_key(brain, suite_dir)
    assert "not-for-the-caller" not in str(refused.value)


@pytest.mark.parametrize("caller, where, problem", [
    ({**CALLER, "maxTurns": 21}, "scenarios[0].caller.maxTurns", "less than or equal to 20"),
    ({**CALLER, "maxTurns": 0}, "scenarios[0].caller.maxTurns", "greater than or equal to 1"),
    ({**CALLER, "brain": {**SCRIPT, "rules": [{"whenAgentSays": ["a"], "say": "b"}] * 31}},
     "scenarios[0].caller.brain.scripted.rules", "at most 30 items"),
    ({**CALLER, "brain": {**SCRIPT, "rules": [{"whenAgentSays": ["x" * 101], "say": "b"}]}},
     "scenarios[0].caller.brain.scripted.rules[0].whenAgentSays[0]", "at most 100 characters"),
    ({**CALLER, "brain": {**SCRIPT, "rules": [{"whenAgentSays": [], "say": "b"}]}},
     "scenarios[0].caller.brain.scripted.rules[0].whenAgentSays", "at least 1 item"),
    ({**CALLER, "brain": {**SCRIPT, "opening": "x" * 501}}, "scenarios[0].caller.brain.scripted.opening",
     "at most 500 characters"),
    ({**CALLER, "brain": {**SCRIPT, "kind": "telepathy"}}, "scenarios[0].caller.brain",
     "'scripted', 'openai'"),
    ({**CALLER, "goal": {"description": "be happy"}}, "scenarios[0].caller.goal", "at least one rule"),
    ({**CALLER, "persona": "p" * 2001}, "scenarios[0].caller.persona", "at most 2000 characters"),
    ({**CALLER, "patienceMs": 10}, "scenarios[0].caller.patienceMs", "greater than or equal to 1000"),
    ({**CALLER, "brain": {**OPENAI, "apiKeyEnv": None}}, "scenarios[0].caller.brain.openai",
     "exactly one of apiKeyEnv and apiKeyFile"),
    ({**CALLER, "brain": {**OPENAI, "apiKeyFile": "k.txt"}}, "scenarios[0].caller.brain.openai",
     "exactly one of apiKeyEnv and apiKeyFile"),
    ({**CALLER, "brain": {**OPENAI, "baseUrl": "file:///etc/passwd"}}, "scenarios[0].caller.brain.openai.baseUrl",
     "should match pattern"),
    ({**CALLER, "brain": {**OPENAI, "apiKeyEnv": "NOT-A-NAME"}}, "scenarios[0].caller.brain.openai.apiKeyEnv",
     "should match pattern"),
    # A scenario from someone else must not send the runner's other secrets to a baseUrl of its choosing.
    ({**CALLER, "brain": {**OPENAI, "apiKeyEnv": "AWS_SECRET_ACCESS_KEY"}},
     "scenarios[0].caller.brain.openai.apiKeyEnv", "should match pattern"),
    ({**CALLER, "brain": {**OPENAI, "apiKeyEnv": "GITHUB_TOKEN"}}, "scenarios[0].caller.brain.openai.apiKeyEnv",
     "should match pattern"),
    ({**CALLER, "brain": {**{k: v for k, v in OPENAI.items() if k != "apiKeyEnv"}, "apiKeyFile": "/root/.ssh/id_rsa"}},
     "scenarios[0].caller.brain.openai.apiKeyFile", "inside the scenario file's folder"),
    ({**CALLER, "brain": {**{k: v for k, v in OPENAI.items() if k != "apiKeyEnv"}, "apiKeyFile": "keys/../../x"}},
     "scenarios[0].caller.brain.openai.apiKeyFile", "inside the scenario file's folder"),
    ({**CALLER, "brain": {**SCRIPT, "openingInterrupt": {"say": "stop", "atMs": 30001}}},
     "scenarios[0].caller.brain.scripted.openingInterrupt.atMs", "less than or equal to 30000"),
    ({**CALLER, "brain": {**SCRIPT, "rules": [{"whenAgentSays": ["a"], "say": "b", "interrupt": {"atMs": 5}}]}},
     "scenarios[0].caller.brain.scripted.rules[0].interrupt.say", "Field required"),
    ({**CALLER, "brain": {**SCRIPT, "openingInterrupt": {"wav": "x.wav", "say": "s", "atMs": 5}}},
     "scenarios[0].caller.brain.scripted.openingInterrupt.wav", "Extra inputs are not permitted"),
])
def test_bad_callers_are_refused_naming_the_field(tmp_path, caller, where, problem):
    with pytest.raises(SuiteError) as refused:
        load_suite(_suite(tmp_path, caller))
    message = str(refused.value)
    assert f"{where}: " in message and problem in message, message


def test_a_key_in_the_scenario_file_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(SuiteError) as refused:
        load_suite(_suite(tmp_path, {**CALLER, "brain": {**OPENAI, "apiKey": KEY}}))
    message = str(refused.value)
    assert "scenarios[0].caller.brain.openai: " in message and "apiKeyEnv or apiKeyFile" in message, message
    assert KEY not in message


def test_a_scenario_needs_turns_or_a_caller_and_may_have_both(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"agent": "concierge", "scenarios": [{"name": "s"}]}))
    with pytest.raises(SuiteError, match=r"scenarios\[0\]: Value error, a scenario needs turns, a caller, or both"):
        load_suite(path)
    both = load_suite(_suite(tmp_path, CALLER, turns=[{"say": "opening hours"}])).suite.scenarios[0]
    assert len(both.turns) == 1 and both.caller is not None and both.caller.max_turns == 6


def test_the_table_and_junit_say_how_the_caller_ended_and_why():
    from datetime import datetime, timezone

    from voxfleet.evaluation.expectations import ExpectationResult
    from voxfleet.evaluation.junit_report import junit_xml
    from voxfleet.evaluation.terminal_output import render_report

    reason = "the agent said nothing for 4 s after 'where is my order 1234' (line 2): the caller hung up"
    failed = ExpectationResult(kind="goalMentions", passed=False, expected="mentions 'ships tomorrow'",
                               actual="", message="expected the agent to mention 'ships tomorrow'; it said: ''")
    scenario = ScenarioResult(name="s", caller=SimulatedCallerResult(
        brain="scripted", goal="Learn the status of order 1234.", lines=2, max_turns=4, ended_by="gave-up",
        reason=reason, expectations=[failed, ExpectationResult(kind="goalReached", passed=False,
                                                               expected="goal reached", actual="gave-up",
                                                               message=reason)]))
    report = RunReport(suite="s.yaml", agent="concierge", gateway="http://g", started_at=datetime.now(timezone.utc),
                       duration_s=1.0, concurrency=1, summary=summarise([scenario]), scenarios=[scenario])
    table = render_report(report)
    assert "caller (scripted, 2/4 lines): goal NOT reached, ended by gave-up: the agent said nothing" in table
    assert "x goalMentions: expected the agent to mention 'ships tomorrow'" in table
    assert report.summary.failed_expectations == 2
    xml = junit_xml(report)
    assert 'name="caller goal: Learn the status of order 1234."' in xml and "said nothing for 4 s" in xml


def _judged_caller(transcript: list[tuple[float, str]], calls: list[tuple[float, dict]], ended_by: str, reason: str):
    """A simulated caller's part judged from a made-up call: agent lines and tool calls at seconds after the
    caller's first line (t0), one simulated turn per agent line."""
    from voxfleet.api.eval_record import EvalToolCall, EvalTranscriptLine, SessionEvalRecord
    from voxfleet.evaluation.eval_sessions import EvalResults
    from voxfleet.evaluation.expectations import judge
    from voxfleet.evaluation.scenario_call import CallTimeline, SimulatedCallerTimeline, TurnTimeline
    from voxfleet.evaluation.scenario_models import RunDefaults, Scenario

    t0 = 1000.0
    timeline = CallTimeline(scenario=Scenario(name="s", caller=CALLER), joined=t0 - 5, ended=t0 + 30)
    timeline.caller = SimulatedCallerTimeline(started=t0, ended_by=ended_by, reason=reason, lines=len(transcript))
    timeline.turns = [TurnTimeline(index=n, said=f"line {n}", started=t0 + at - 1, voice_ended=t0 + at - 0.5,
                                   reply_start=t0 + at, reply_end=t0 + at + 1, ended=t0 + at + 2, simulated=True,
                                   because=f"rule {n}") for n, (at, _) in enumerate(transcript, start=1)]
    record = SessionEvalRecord(
        session_id="sess-1", complete=True,
        transcript=[EvalTranscriptLine(role="agent", text=text, at=timeline.wall(t0 + at)) for at, text in transcript],
        tool_calls=[EvalToolCall(name="lookup_order", call_id=f"c{n}", arguments=arguments, outcome="ok",
                                 started_at=timeline.wall(t0 + at), ended_at=timeline.wall(t0 + at + 0.1))
                    for n, (at, arguments) in enumerate(calls)])
    timeline.results = EvalResults(record, "returned")
    return judge(timeline, RunDefaults(), recognise=False)


def test_the_goal_is_judged_over_the_callers_part_with_the_reason_in_words():
    reached = _judged_caller([(1.0, "Sorry, I didn't get all the details."), (5.0, "It ships tomorrow.")],
                             [(0.5, {"order_id": ""}), (4.0, {"order_id": "1234"})], "goal",
                             "the goal was reached after 2 lines")
    assert reached.passed and reached.caller.goal_reached and reached.caller.ended_by == "goal"
    assert [t.because for t in reached.turns] == ["rule 1", "rule 2"] and all(t.simulated for t in reached.turns)
    assert ("s/caller goal/lookup_order({\"order_id\": \"1234\"})", True) in [
        (key, e.passed) for key, e in reached.expectations()]

    missed = _judged_caller([(1.0, "Sorry, could you say that again?")], [(0.5, {"order_id": "12"})],
                            "turn-limit", "the caller said 1 lines (its maxTurns) without reaching its goal")
    assert not missed.passed and not missed.caller.goal_reached
    assert missed.caller.reason == (
        "the caller said 1 lines (its maxTurns) without reaching its goal; goal not reached: lookup_order was"
        " called with other arguments: order_id was \"12\", expected \"1234\"")


def test_a_missing_llm_key_stops_the_run_before_any_call_but_not_a_check(tmp_path, monkeypatch, capsys):
    from voxfleet.evaluation import eval_cli

    monkeypatch.delenv("NO_SUCH_CALLER_API_KEY", raising=False)
    path = _suite(tmp_path, {**CALLER, "brain": {**OPENAI, "apiKeyEnv": "NO_SUCH_CALLER_API_KEY"}})
    assert eval_cli.main(["--check", str(path)]) == 0
    # No gateway listens on port 9: the run must stop on the missing key before it tries one.
    assert eval_cli.main([str(path), "--gateway", "http://127.0.0.1:9", "--key", "k", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "s: caller.brain.apiKeyEnv: the environment variable NO_SUCH_CALLER_API_KEY is not set" in err, err
