"""A scenario's rubric, judged by an LLM through the real openai client against the local OpenAI-compatible fake
(real HTTP, the key checked): what the judge is sent (the criteria, the call's transcript with its tool calls), its
verdict and reason in the result, and every way a judge can fail to give one (a refused key, an answer that is not
a verdict, a call that never happened) as a failed expectation that says why, never with the key."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.fakes.openai_server import Script, start_fake_openai
from voxfleet.evaluation.llm_keys import key_problems
from voxfleet.evaluation.report_models import ExpectationResult, ScenarioResult, ToolCallSeen, TurnResult
from voxfleet.evaluation.rubric_judge import call_transcript, judge_by_rubric, parse_verdict
from voxfleet.evaluation.scenario_models import Rubric
from voxfleet.evaluation.suite_loader import SuiteError, load_suite

KEY = "sk-test-rubric-judge-0123456789"
CRITERIA = "The agent looks the order up with its number and says when it ships."


class VerdictOnTheTranscript(Script):
    """A stand-in judge that reads what it is sent: pass when the agent said when the order ships."""

    def answer(self, body):
        user = body["messages"][-1]["content"]
        if "ships tomorrow" in user:
            reason = "The agent looked up order 1234 and said it ships tomorrow."
            return json.dumps({"pass": True, "reason": reason}), None
        return 'Verdict: {"pass": false, "reason": "The agent never said when the order ships."}', None


def _rubric(url: str) -> Rubric:
    return Rubric.model_validate({"criteria": CRITERIA, "judge": {
        "kind": "openai", "baseUrl": url, "model": "judge-model", "apiKeyEnv": "JUDGE_API_KEY", "temperature": 0}})


def _call(agent_says: str) -> ScenarioResult:
    return ScenarioResult(name="order", greeting="Hello, how can I help?", turns=[
        TurnResult(index=1, said="where is my order one two three four", agent_text=agent_says,
                   tool_calls=[ToolCallSeen(name="lookup_order", arguments={"order_id": "1234"})])])


@pytest.fixture
def judge():
    fake = start_fake_openai(script=VerdictOnTheTranscript(), api_key=KEY)
    yield fake
    fake.stop()


async def test_the_judge_reads_the_transcript_and_its_verdict_is_kept(judge):
    good = await judge_by_rubric(_rubric(judge.url), _call("Order 1234 ships tomorrow."), KEY)
    bad = await judge_by_rubric(_rubric(judge.url), _call("Let me check that for you."), KEY)
    assert good.passed and good.kind == "rubric" and "ships tomorrow" in good.actual
    assert not bad.passed and bad.actual == "The agent never said when the order ships."  # JSON inside prose
    assert bad.message == "the judge failed the call: The agent never said when the order ships."
    request = judge.requests[0]
    assert request["model"] == "judge-model" and request["temperature"] == 0
    sent = request["messages"][-1]["content"]
    assert CRITERIA in sent and "caller: where is my order one two three four" in sent
    assert '(the agent called the tool lookup_order with {"order_id": "1234"})' in sent
    assert "agent: Hello, how can I help?" in sent and judge.headers[0]["Authorization"] == f"Bearer {KEY}"
    print(f"judge verdicts: pass {good.actual!r}; fail {bad.actual!r}")


async def test_a_refused_key_fails_the_rubric_without_the_key(judge):
    verdict = await judge_by_rubric(_rubric(judge.url), _call("Order 1234 ships tomorrow."), "sk-wrong-key-000000")
    assert not verdict.passed and verdict.message == "the judge's LLM answered HTTP 401 (AuthenticationError)"
    assert "sk-wrong" not in verdict.model_dump_json()


async def test_an_answer_that_is_no_verdict_fails_saying_what_the_judge_said():
    fake = start_fake_openai(script=Script(reply="I think it went fine overall."), api_key=KEY)
    try:
        verdict = await judge_by_rubric(_rubric(fake.url), _call("Order 1234 ships tomorrow."), KEY)
    finally:
        fake.stop()
    assert not verdict.passed
    assert verdict.message == "the judge's answer was not a verdict: 'I think it went fine overall.'"


async def test_a_call_that_never_happened_is_not_sent_to_the_judge(judge):
    verdict = await judge_by_rubric(_rubric(judge.url), ScenarioResult(name="x", error="the gateway refused"), KEY)
    assert not verdict.passed and "did not take place" in verdict.message and not judge.requests


@pytest.mark.parametrize("text, verdict", [
    ('{"pass": true, "reason": "fine"}', (True, "fine")),
    ('Here: {"pass": false,\n "reason": "rude  at the end"} done', (False, "rude at the end")),
    ('{"pass": "yes", "reason": "x"}', None),
    ('{"verdict": true}', None),
    ("no json here", None),
    ('{"pass": true}', (True, "(no reason given)")),
])
def test_verdicts_are_read_strictly(text, verdict):
    assert parse_verdict(text) == verdict


def test_the_transcript_is_bounded():
    long = _call("word " * 10000)
    assert len(call_transcript(long)) == 20000


def test_a_rubric_is_one_more_expectation_of_the_scenario():
    result = _call("Order 1234 ships tomorrow.")
    result.rubric = ExpectationResult(kind="rubric", passed=False, expected=CRITERIA, actual="no", message="m")
    assert ("order/rubric", result.rubric) in result.expectations()


def test_rubric_keys_follow_the_callers_rules(tmp_path, monkeypatch):
    suite = {"agent": "concierge", "scenarios": [{"name": "s", "turns": [{"say": "hello"}], "rubric": {
        "criteria": CRITERIA, "judge": {"kind": "openai", "baseUrl": "http://127.0.0.1:9/v1", "model": "m",
                                        "apiKeyEnv": "JUDGE_API_KEY"}}}]}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    monkeypatch.delenv("JUDGE_API_KEY", raising=False)
    loaded = load_suite(path)
    assert key_problems(loaded.suite.scenarios, tmp_path) == [
        "s: rubric.judge.apiKeyEnv: the environment variable JUDGE_API_KEY is not set"]
    for bad, field in (({"apiKey": KEY}, "an API key does not belong in a scenario file"),
                       ({"apiKeyEnv": "AWS_SECRET_ACCESS_KEY"}, "apiKeyEnv"),
                       ({"apiKeyEnv": None, "apiKeyFile": "../key"}, "apiKeyFile")):
        judge = {**suite["scenarios"][0]["rubric"]["judge"], **bad}
        broken = {**suite, "scenarios": [{**suite["scenarios"][0], "rubric": {"criteria": CRITERIA, "judge": judge}}]}
        path.write_text(yaml.safe_dump(broken))
        with pytest.raises(SuiteError) as refused:
            load_suite(path)
        assert field in str(refused.value) and KEY not in str(refused.value)
    broken = {**suite, "scenarios": [{**suite["scenarios"][0], "rubric": {"criteria": "x" * 2001, "judge": judge}}]}
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(SuiteError, match="criteria"):
        load_suite(path)
