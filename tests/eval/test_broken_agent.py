"""The offline demo's own suite against a deliberately broken copy of the agent: a wrong intent (the goodbye
phrases answered by the opening-hours intent), a slow tool with no filler (dead air while the order lookup
takes seconds), and interruptions disabled. Exactly the expectations those defects break fail, every time the
scenario is placed (it runs twice: --retries 1), each with a message that says what differed. (Speech-to-text
of eSpeak digits on a loaded machine can slip once; a defect fails on every attempt.)"""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.eval.eval_platform import REPO, offline_demo_spec, read_report
from voxfleet.evaluation.scenario_models import BargeIn

pytestmark = pytest.mark.world

SUITE = REPO / "examples" / "scenarios" / "offline-demo.yaml"
SLOW_TOOL_S = 6.0
# The bound the suite's barge-in turn is judged by: its own, or the scenario format's default.
STOP_WITHIN_MS = next((turn["bargeIn"].get("stopWithinMs", BargeIn.model_fields["stop_within_ms"].default)
                       for scenario in yaml.safe_load(SUITE.read_text())["scenarios"]
                       for turn in scenario["turns"] if "bargeIn" in turn))


def broken_spec(tool_url: str) -> dict:
    spec = offline_demo_spec(tool_url)
    goodbye = next(i for i in spec["intents"] if i["name"] == "goodbye")
    hours = next(i for i in spec["intents"] if i["name"] == "hours")
    hours["keywords"] += goodbye["keywords"]  # wrong intent: "thank you goodbye" now gets the opening hours
    spec["intents"].remove(goodbye)
    tool = spec["tools"][0]
    tool["http"]["timeoutMs"] = 10000
    tool["filler"]["afterMs"] = 10000  # no filler: the caller hears nothing while the slow tool runs
    spec["interruptions"] = {"enabled": False}
    return spec


@pytest.fixture(scope="module")
def broken_run(eval_platform, tmp_path_factory):
    eval_platform.tool.delay_s = SLOW_TOOL_S
    eval_platform.deploy("concierge-broken", broken_spec(eval_platform.tool.url), workers=1)
    out = tmp_path_factory.mktemp("broken-run")
    suite = yaml.safe_load(SUITE.read_text())
    suite["agent"] = "concierge-broken"
    (out / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    shutil.copytree(SUITE.parent / "recordings", out / "recordings")  # WAV turns are relative to the suite
    result = eval_platform.eval(out / "suite.yaml", "--report", str(out / "report.json"), "--concurrency", "1",
                                "--retries", "1")
    assert (out / "report.json").exists(), result.stdout + result.stderr
    return result, read_report(out / "report.json")


def _failures(scenario: dict) -> dict[str, str]:
    """Failed expectations of the scenario's final attempt: key (scenario/turn N/expected) -> message."""
    assert scenario["error"] is None, scenario["error"]
    return {f"{scenario['name']}/turn {turn['index']}/{e['expected']}": e["message"]
            for turn in scenario["turns"] for e in turn["expectations"] if not e["passed"]}


def _every_time(report: dict) -> dict[str, str]:
    """Expectations that failed in every attempt of their scenario, with the final attempt's message."""
    consistent: dict[str, str] = {}
    for scenario in report["scenarios"]:
        final = _failures(scenario)
        keys = set(final)
        for earlier in scenario["earlierAttempts"]:
            assert earlier["error"] is None, earlier["error"]
            keys &= {failed["key"] for failed in earlier["failed"]}
        consistent.update({key: final[key] for key in keys})
    return consistent


WRONG_INTENT = "opening-hours/turn 2/mentions 'goodbye'"
SLOW_TOOL = "order-status/turn 1/TTFA <= 4000 ms"
NO_INTERRUPTIONS = f"barge-in/turn 1/stops within {STOP_WITHIN_MS} ms"
WRONG_INTENT_AFTER_BARGE_IN = "barge-in/turn 1/mentions 'goodbye'"


def test_exactly_the_broken_behaviours_fail(broken_run):
    result, report = broken_run
    assert result.returncode == 1, result.stdout + result.stderr
    broken = {key.split("/")[0] for key in (WRONG_INTENT, SLOW_TOOL, NO_INTERRUPTIONS)}
    assert all(len(s["earlierAttempts"]) == 1 for s in report["scenarios"] if s["name"] in broken)
    assert set(_every_time(report)) == {WRONG_INTENT, SLOW_TOOL, NO_INTERRUPTIONS, WRONG_INTENT_AFTER_BARGE_IN}, \
        result.stdout


def test_the_messages_say_what_differed(broken_run):
    result, report = broken_run
    failed = _every_time(report)
    wrong = failed[WRONG_INTENT]
    assert wrong.startswith("expected the agent to mention 'goodbye'; it said: 'We are open every day"), wrong
    slow = failed[SLOW_TOOL]
    assert "is over the bound of 4000 ms" in slow, slow
    ttfa = next(t["ttfaMs"] for s in report["scenarios"] if s["name"] == "order-status" for t in s["turns"])
    assert ttfa > SLOW_TOOL_S * 1000, "the caller heard nothing until the slow tool answered"
    kept = failed[NO_INTERRUPTIONS]
    assert "the agent kept talking for" in kept and f"expected it to stop within {STOP_WITHIN_MS} ms" in kept, kept
    assert "the session recorded no interruption" in kept, kept
    for message in failed.values():  # the table shows the same sentences
        assert message in result.stdout


def test_the_slow_tool_was_still_called_and_its_server_logged_each_call(broken_run, eval_platform):
    _, report = broken_run
    order = next(s for s in report["scenarios"] if s["name"] == "order-status")
    [call] = order["turns"][0]["toolCalls"]
    assert (call["name"], call["outcome"]) == ("lookup_order", "ok")
    assert call["arguments"]["order_id"] in eval_platform.tool.order_ids()  # the tool server's own request log
    assert len(eval_platform.tool.order_ids()) == 2  # once per attempt, each after SLOW_TOOL_S of dead air
