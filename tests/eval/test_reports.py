"""Reports, JUnit XML, the table and baseline comparison, checked on reports recorded from real `voxfleet eval`
runs of the offline demo suite (tests/eval/data/, written by the runner itself: one that passed, one against
the deliberately broken agent of test_broken_agent.py, and an older one made under heavy machine load), plus the
pure helpers the runner judges with."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from voxfleet.evaluation import eval_cli
from voxfleet.evaluation.agent_speech import mentions, words
from voxfleet.evaluation.baseline import BaselineError, compare, load_baseline
from voxfleet.evaluation.junit_report import junit_xml
from voxfleet.evaluation.report_models import RunReport, percentile, summarise
from voxfleet.evaluation.scenario_call import first_pause
from voxfleet.evaluation.scenario_models import Tolerances
from voxfleet.evaluation.terminal_output import render_report

DATA = Path(__file__).with_name("data")
RECORDED = sorted(DATA.glob("*.json"))


@pytest.fixture(params=RECORDED, ids=[p.stem for p in RECORDED])
def recorded(request) -> RunReport:
    return load_baseline(request.param)


@pytest.fixture
def passing() -> RunReport:
    return load_baseline(DATA / "offline-demo-passed.json")


@pytest.fixture
def failing() -> RunReport:
    return load_baseline(DATA / "offline-demo-broken-agent.json")


def _failed_keys(report: RunReport) -> list[str]:
    return sorted(key for s in report.scenarios for key, e in s.expectations() if not e.passed)


def test_recorded_reports_are_what_the_runner_wrote(recorded):
    assert summarise(recorded.scenarios) == recorded.summary
    assert RunReport.model_validate(json.loads(json.dumps(recorded.to_wire()))) == recorded
    ttfas = [t.ttfa_ms for s in recorded.scenarios for t in s.turns if t.ttfa_ms is not None]
    assert recorded.summary.ttfa_p95_ms == pytest.approx(np.percentile(ttfas, 95), abs=0.1)
    assert recorded.summary.ttfa_p50_ms == pytest.approx(np.median(ttfas), abs=0.1)
    for scenario in recorded.scenarios:  # flaky: failed first (kept as an earlier attempt), then passed
        assert scenario.flaky == (scenario.passed and bool(scenario.earlier_attempts))
        assert all(attempt.failed or attempt.error for attempt in scenario.earlier_attempts)


def test_the_two_recordings_are_one_pass_and_one_failure(passing, failing):
    assert passing.passed and passing.summary.failed_expectations == 0
    assert not failing.passed and failing.summary.failed_expectations > 0


def test_a_run_compared_with_itself_has_no_regression(recorded):
    comparison = compare(recorded, recorded, Tolerances(), baseline_name="same.json")
    assert comparison.passed and not comparison.regressions and not comparison.newly_failing


def test_a_baseline_with_tighter_ttfa_names_the_regression(recorded):
    tight = recorded.model_copy(deep=True)
    tight.summary.ttfa_p95_ms = round(recorded.summary.ttfa_p95_ms / 2, 1)
    tolerances = Tolerances(ttfa_p95_increase_ms=50, ttfa_p95_increase_percent=10)
    comparison = compare(recorded, tight, tolerances, baseline_name="tight.json")
    assert not comparison.passed
    [regression] = comparison.regressions
    allowed = tight.summary.ttfa_p95_ms + max(50, tight.summary.ttfa_p95_ms * 0.1)
    assert (regression.metric, regression.baseline, regression.current) == (
        "ttfaP95", tight.summary.ttfa_p95_ms, recorded.summary.ttfa_p95_ms)
    assert regression.allowed == pytest.approx(allowed, abs=0.1)
    assert regression.message == (
        f"TTFA p95 rose from {tight.summary.ttfa_p95_ms:.0f} ms to {recorded.summary.ttfa_p95_ms:.0f} ms"
        f" (+{recorded.summary.ttfa_p95_ms - tight.summary.ttfa_p95_ms:.0f} ms); the tolerance allows up to"
        f" {allowed:.0f} ms")


def test_a_rise_within_the_tolerance_passes(recorded):
    slightly = recorded.model_copy(deep=True)
    slightly.summary.ttfa_p95_ms = recorded.summary.ttfa_p95_ms - 100
    assert compare(recorded, slightly, Tolerances(ttfa_p95_increase_ms=100, ttfa_p95_increase_percent=0),
                   baseline_name="b").passed
    assert not compare(recorded, slightly, Tolerances(ttfa_p95_increase_ms=99, ttfa_p95_increase_percent=0),
                       baseline_name="b").passed


def test_failures_against_a_passing_baseline_are_named_one_by_one(passing, failing):
    comparison = compare(failing, passing, Tolerances(ttfa_p95_increase_ms=60000), baseline_name="passed.json")
    metrics = {r.metric: r for r in comparison.regressions}
    assert set(metrics) == {"turnSuccessRate", "failedExpectations"}
    rate = metrics["turnSuccessRate"]
    assert (rate.baseline, rate.current) == (1.0, failing.summary.turn_success_rate)
    assert f"({failing.summary.turns_passed}/{failing.summary.turns} turns passed)" in rate.message
    assert metrics["failedExpectations"].message == (
        f"failed expectations rose from 0 to {failing.summary.failed_expectations}; the tolerance allows 0")
    assert comparison.newly_failing == _failed_keys(failing)
    allowing = Tolerances(ttfa_p95_increase_ms=60000, turn_success_rate_drop=1.0,
                          failed_expectations_increase=failing.summary.failed_expectations)
    assert compare(failing, passing, allowing, baseline_name="passed.json").passed

    back = compare(passing, failing, Tolerances(), baseline_name="under-load.json")
    assert back.passed and back.fixed == _failed_keys(failing)


def test_junit_has_a_case_per_turn_and_the_failure_messages(recorded):
    recorded = recorded.model_copy(deep=True)
    recorded.baseline = compare(recorded, recorded, Tolerances(), baseline_name="same.json")
    root = ElementTree.fromstring(junit_xml(recorded).split("\n", 1)[1])
    cases = root.findall(".//testcase")
    greetings = sum(1 for s in recorded.scenarios if s.greeting_expectations)
    turns = [t for s in recorded.scenarios for t in s.turns]
    assert len(cases) == greetings + len(turns) + 1 and root.get("tests") == str(len(cases))
    failed_turns = [t for t in turns if not t.passed]
    assert int(root.get("failures")) + int(root.get("errors")) == len(failed_turns) + sum(
        1 for s in recorded.scenarios if any(not e.passed for e in s.greeting_expectations))
    by_name = {(c.get("classname"), c.get("name")): c for c in cases}
    for scenario in recorded.scenarios:
        for turn in scenario.turns:
            case = by_name[(f"{recorded.agent}.{scenario.name}", f"turn {turn.index}: {turn.said}"[:120])]
            failure = case.find("failure")
            if turn.passed:
                assert failure is None
            else:
                first = next(e for e in turn.expectations if not e.passed)
                assert failure.get("message") == first.message and failure.get("type") == first.kind
    assert by_name[(f"{recorded.agent}.baseline", "compared with same.json")].find("failure") is None


def test_the_table_shows_every_turn_and_why_it_failed(recorded):
    text = render_report(recorded)
    for scenario in recorded.scenarios:
        assert f"{'PASS' if scenario.passed else 'FAIL'} {scenario.name}" in text
        for turn in scenario.turns:
            for expectation in turn.expectations:
                if not expectation.passed:
                    assert f"x {expectation.kind}: {expectation.message}" in text
    s = recorded.summary
    assert f"{s.scenarios_passed}/{s.scenarios} scenarios passed" in text
    assert f"p95 {s.ttfa_p95_ms:.0f} ms" in text


def test_unusable_baselines_are_refused(tmp_path, capsys):
    (tmp_path / "junk.json").write_text('{"not": "a report"}')
    with pytest.raises(BaselineError, match="not a voxfleet eval report"):
        load_baseline(tmp_path / "junk.json")
    with pytest.raises(BaselineError, match="cannot read the baseline"):
        load_baseline(tmp_path / "missing.json")
    suite = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "offline-demo.yaml"
    assert eval_cli.main([str(suite), "--baseline", str(tmp_path / "junk.json"), "--key", "k"]) == 2
    assert "not a voxfleet eval report" in capsys.readouterr().err
    assert eval_cli.main([str(suite), "--key", "k", "--tolerance-turn-success-drop", "3"]) == 2
    assert "invalid tolerance" in capsys.readouterr().err


# --- the pure helpers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("voiced, now, expected", [
    ([], 10.5, 10.0),                       # quiet since `after`, long enough
    ([], 10.2, None),                       # quiet, not long enough yet
    ([10.1, 10.2, 10.3, 11.0], 11.5, 10.3),  # the first 0.4 s pause ends the stretch at 10.3
    ([10.1, 10.2, 10.3], 10.5, None),       # still within the pause window
    ([10.5, 10.6], 11.2, 10.0),             # the pause came before the first voiced frame
])
def test_first_pause(voiced, now, expected):
    assert first_pause(voiced, 10.0, 0.4, now=now) == expected


@pytest.mark.parametrize("text, phrase, found", [
    ("Order 1 2 3 4 is being packed today.", "1234", True),
    ("order one two three four", "1234", True),
    ("We are open every day from nine in the morning", "nine in the morning", True),
    ("We are open every day from nine in the morning", "in the evening", False),
    ("Thanks for calling. Goodbye!", "goodbye", True),
    ("goodbyes all round", "goodbye", False),                    # whole words only
    ("the morning nine in", "nine in the morning", False),       # in order
])
def test_mentions(text, phrase, found):
    assert mentions(text, phrase) is found


def test_words_join_spoken_digits():
    assert words("Order number four 5, six!") == ["order", "number", "456"]


def test_percentile_matches_numpy():
    rng = np.random.default_rng(7)
    for size in (1, 2, 5, 20, 101):
        values = list(rng.uniform(100, 3000, size))
        for q in (50, 95, 99):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([], 95) is None
