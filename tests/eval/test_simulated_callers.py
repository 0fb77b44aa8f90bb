"""Simulated callers as real calls: the shipped scripted caller reaches its order-status goal against the offline
demo agent by answering the agent's request for details (the demo cannot look an order up without its number),
and the same caller fails against the deliberately broken agent (a slow tool with no filler) with the reason in
the report. A third call has the local OpenAI-compatible fake play the caller through the openai client.

Everything judged is what the caller heard and the session recorded (the eval record), never the agent's logs.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest
import yaml

from tests.eval.eval_platform import REPO, offline_demo_spec, read_report, write_suite
from tests.eval.test_broken_agent import SLOW_TOOL_S, broken_spec
from tests.fakes.openai_server import Script, start_fake_openai

pytestmark = pytest.mark.world

SUITE = REPO / "examples" / "scenarios" / "offline-demo-simulated.yaml"
ORDER_LINE = "where is my order one two three four"
FAKE_KEY = "sk-test-simulated-caller-0123456789"


@pytest.fixture(scope="module")
def runs(eval_platform, tmp_path_factory):
    """The shipped suite against the demo agent, then against the broken one (the tool server's delay is shared,
    so the runs go one after the other)."""
    out = tmp_path_factory.mktemp("simulated-callers")
    eval_platform.tool.delay_s = 0.0
    eval_platform.deploy("concierge", offline_demo_spec(eval_platform.tool.url), workers=1)
    demo = eval_platform.eval(SUITE, "--report", str(out / "demo.json"), "--junit", str(out / "demo.xml"),
                              "--concurrency", "1", "--retries", "1")
    assert (out / "demo.json").exists(), demo.stdout + demo.stderr
    demo_orders = eval_platform.tool.order_ids()

    eval_platform.deploy("concierge-broken", broken_spec(eval_platform.tool.url), workers=1)
    eval_platform.tool.delay_s = SLOW_TOOL_S
    suite = yaml.safe_load(SUITE.read_text())
    suite["agent"] = "concierge-broken"
    broken = eval_platform.eval(write_suite(out / "broken.yaml", suite), "--report", str(out / "broken.json"),
                                "--junit", str(out / "broken.xml"), "--concurrency", "1")
    assert (out / "broken.json").exists(), broken.stdout + broken.stderr
    eval_platform.tool.delay_s = 0.0
    return {"demo": (demo, read_report(out / "demo.json"), ElementTree.parse(out / "demo.xml").getroot(),
                     demo_orders),
            "broken": (broken, read_report(out / "broken.json"), ElementTree.parse(out / "broken.xml").getroot())}


def test_the_scripted_caller_reaches_its_goal_by_answering_the_agents_question(runs):
    result, report, junit, orders = runs["demo"]
    assert result.returncode == 0, result.stdout + result.stderr
    [scenario] = report["scenarios"]
    caller = scenario["caller"]
    assert caller["goalReached"] and caller["endedBy"] == "goal", caller
    turns = scenario["turns"]
    assert all(t["simulated"] for t in turns)
    # The opening line has no number: the agent says it lacks details, and the caller answers with the number.
    assert turns[0]["said"] == "where is my order" and "details" in turns[0]["agentText"].lower(), turns[0]
    assert turns[1]["said"] == ORDER_LINE and turns[1]["because"].startswith("rule 1"), turns[1]
    assert "ships tomorrow" in turns[1]["agentText"].lower(), turns[1]
    assert {"name": "lookup_order", "arguments": {"order_id": "1234"}} in [
        {"name": c["name"], "arguments": c["arguments"]} for c in turns[1]["toolCalls"]], turns[1]
    assert turns[-1]["said"] == "thank you goodbye" and "goodbye" in turns[-1]["agentText"].lower()
    assert caller["lines"] == 2 and len(turns) == 3  # the closing line is not counted against maxTurns
    assert "1234" in orders  # the tool server's own request log
    print(f"simulated caller: {len(turns)} turns, TTFA {[t['ttfaMs'] for t in turns]} ms")
    assert "goal reached" in result.stdout and "simulated caller: rule 1: the agent said 'details'" in result.stdout
    [goal_case] = [c for c in junit.iter("testcase") if c.get("name").startswith("caller goal")]
    assert goal_case.find("failure") is None


def test_the_same_caller_fails_against_the_broken_agent_with_the_reason(runs):
    result, report, junit = runs["broken"]
    assert result.returncode == 1, result.stdout + result.stderr
    [scenario] = report["scenarios"]
    caller = scenario["caller"]
    assert not caller["goalReached"] and not scenario["passed"]
    # The number was given, but the slow tool left the line silent past the caller's patience: it hung up.
    assert caller["endedBy"] == "gave-up", caller
    assert "the agent said nothing for 4 s after 'where is my order one two three four'" in caller["reason"], caller
    assert "expected the agent to mention 'ships tomorrow'" in caller["reason"], caller
    failed = {e["kind"] for e in caller["expectations"] if not e["passed"]}
    # What this agent breaks is the silence; the goal's tool call usually holds (the number was given), but under
    # the realtime phase's load the recogniser once heard "one two three four" as 12340 (a fresh-clone run), so it
    # may fail too, never in place of the words the caller waited for.
    assert {"goalMentions", "goalReached"} <= failed <= {"goalMentions", "goalReached", "goalToolCall"}, \
        caller["expectations"]
    assert "goal NOT reached" in result.stdout and "ships tomorrow" in result.stdout
    [goal_case] = [c for c in junit.iter("testcase") if c.get("name").startswith("caller goal")]
    assert "said nothing for 4 s" in goal_case.find("failure").text


class CallerAndJudge(Script):
    """The fake plays the caller (its one line) and, asked by a rubric, judges on what the transcript it was sent
    says: pass only when the agent said when the order ships."""

    def answer(self, body):
        messages = body["messages"]
        if not messages[0]["content"].startswith("You judge"):
            return ORDER_LINE, None
        ships = "ships tomorrow" in messages[-1]["content"].lower()
        return json.dumps({"pass": ships, "reason": "the agent said the order ships tomorrow" if ships
                           else "the agent never said when the order ships"}), None


def test_an_llm_plays_the_caller_through_the_openai_client(runs, eval_platform, tmp_path):
    """The local fake speaks the real Chat Completions protocol and checks the key; the caller's line is its, and
    the scenario's rubric is judged by it too, on the transcript of the call as heard."""
    fake = start_fake_openai(script=CallerAndJudge(), api_key=FAKE_KEY)
    try:
        suite = yaml.safe_load(SUITE.read_text())
        suite["scenarios"][0]["caller"]["brain"] = {"kind": "openai", "baseUrl": fake.url, "model": "caller-model",
                                                    "apiKeyEnv": "SIMULATED_CALLER_API_KEY"}
        suite["scenarios"][0]["rubric"] = {"criteria": "The agent says when order 1234 ships.", "judge": {
            "kind": "openai", "baseUrl": fake.url, "model": "judge-model", "apiKeyEnv": "SIMULATED_CALLER_API_KEY",
            "temperature": 0}}
        path = write_suite(tmp_path / "llm.yaml", suite)
        argv, env = eval_platform.eval_command(path, "--report", str(tmp_path / "llm.json"), "--concurrency", "1",
                                               "--retries", "1")
        result = subprocess.run(argv, env={**env, "SIMULATED_CALLER_API_KEY": FAKE_KEY}, capture_output=True,
                                text=True, timeout=300)
    finally:
        fake.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    report = read_report(tmp_path / "llm.json")
    [scenario] = report["scenarios"]
    assert scenario["caller"]["brain"] == "openai" and scenario["caller"]["endedBy"] == "goal"
    assert scenario["turns"][0]["said"] == ORDER_LINE and "ships tomorrow" in scenario["turns"][0]["agentText"].lower()
    assert scenario["rubric"]["passed"], scenario["rubric"]
    assert scenario["rubric"]["actual"] == "the agent said the order ships tomorrow"
    assert "rubric: PASS, the judge passed the call" in result.stdout
    [judged] = [r for r in fake.requests if r["model"] == "judge-model"]
    assert "caller: " + ORDER_LINE in judged["messages"][-1]["content"]
    request = fake.requests[0]
    assert request["model"] == "caller-model"
    system = request["messages"][0]["content"]
    assert "Learn the status of order 1234" in system and "customer in a hurry" in system
    assert any(m["role"] == "user" and "demo line" in m["content"] for m in request["messages"])  # the greeting
    assert FAKE_KEY not in (tmp_path / "llm.json").read_text() + result.stdout + result.stderr


def test_a_scripted_caller_cuts_in_and_the_agent_stops_as_the_caller_hears_it(runs, eval_platform, tmp_path):
    """An impatient caller asks for the opening hours and cuts in 800 ms into the answer with "thank you goodbye":
    the interruption is timed from the caller's voice onset to the agent's last voiced audio in the room, judged
    as a barge-in (stopsWhenInterrupted), and the goodbye that answers it reaches the caller's goal."""
    suite = {"agent": "concierge", "defaults": {"ttfaMaxMs": 4000}, "scenarios": [{
        "name": "impatient-caller", "caller": {
            "persona": "A caller who only half listens and cuts the agent off.",
            "goal": {"description": "Say goodbye.", "mentions": ["goodbye"]}, "maxTurns": 2, "patienceMs": 4000,
            "brain": {"kind": "scripted", "opening": "opening hours",
                      # The demo's default VAD stops in 430-470 ms as heard (examples/scenarios/offline-demo.yaml's
                      # barge-in bound, 600 ms, is the demo's as shipped; the 300 ms goal needs a faster VAD start).
                      "openingInterrupt": {"say": "thank you goodbye", "atMs": 800, "stopWithinMs": 600}}}}]}
    path = write_suite(tmp_path / "impatient.yaml", suite)
    result = eval_platform.eval(path, "--report", str(tmp_path / "impatient.json"), "--retries", "1")
    report = read_report(tmp_path / "impatient.json")
    [scenario] = report["scenarios"]
    assert result.returncode == 0 and scenario["passed"], result.stdout + result.stderr
    [turn] = scenario["turns"]
    barge = turn["bargeIn"]
    assert turn["simulated"] and barge["said"] == "thank you goodbye" and barge["agentWasSpeaking"], turn
    assert 0 <= barge["agentStoppedAfterMs"] <= 600, barge
    assert {e["kind"]: e["passed"] for e in turn["expectations"]}["stopsWhenInterrupted"]
    assert scenario["caller"]["endedBy"] == "goal" and "goodbye" in turn["agentText"].lower()
    assert "barge-in at" in result.stdout
    print(f"simulated caller cut in {barge['startedAfterReplyMs']:.0f} ms into the answer; the agent stopped"
          f" {barge['agentStoppedAfterMs']:.0f} ms after the caller's voice began (heard in the room)")
