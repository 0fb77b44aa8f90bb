"""`voxfleet eval --load 20 --duration D` against the test world's platform: twenty callers on two workers with
twelve slots between them, so some callers meet 503 no free slot and wait for one. The report's figures must be
what its own calls say (recomputed here from the per-call TTFA the callers heard), the refusals must be counted
where they happened, and the terminal shows the loaded figures beside the single-caller run's.

The TTFA of each call is the caller-heard figure that test_concurrent_run.py checks against the recorded audio."""

from __future__ import annotations

import numpy as np
import pytest

from tests.eval.eval_platform import offline_demo_spec, read_report, write_suite

pytestmark = pytest.mark.world

AGENT = "switchboard"
CALLERS = 20
DURATION_S = 25
WORKERS, SLOTS_PER_WORKER = 2, 6


def _suite() -> dict:
    return {"agent": AGENT, "defaults": {"answerTimeoutMs": 20000}, "scenarios": [
        {"name": "hours", "turns": [{"say": "opening hours", "expect": {"mentions": ["nine in the morning"]}}]},
        {"name": "goodbye", "turns": [{"say": "thank you goodbye", "expect": {"mentions": ["goodbye"]}}]}]}


def _spec(tool_url: str) -> dict:
    intents = [i for i in offline_demo_spec(tool_url)["intents"] if i["name"] in ("hours", "goodbye")]
    return offline_demo_spec(tool_url, greeting="Hello, how can I help?", tools=[], intents=intents,
                             scaling={"sessionsPerWorker": SLOTS_PER_WORKER, "bufferSessions": 0})


@pytest.fixture(scope="module")
def load_run(eval_platform, tmp_path_factory):
    eval_platform.deploy(AGENT, _spec(eval_platform.tool.url), workers=WORKERS)
    out = tmp_path_factory.mktemp("load-run")
    result = eval_platform.eval(write_suite(out / "suite.yaml", _suite()), "--load", str(CALLERS), "--duration",
                                str(DURATION_S), "--report", str(out / "report.json"), timeout=DURATION_S + 240)
    assert (out / "report.json").exists(), result.stdout + result.stderr
    return result, read_report(out / "report.json")


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def test_the_load_figures_are_what_the_calls_say(load_run):
    result, report = load_run
    output = result.stdout + result.stderr
    assert report["format"] == "voxfleet-eval-load-report/v1"
    assert report["callers"] == CALLERS and report["durationS"] == DURATION_S
    calls, single, loaded = report["calls"], report["single"], report["loaded"]
    assert [c["scenario"] for c in report["singleCalls"]] == ["hours", "goodbye"], output
    assert len(calls) >= CALLERS and {c["caller"] for c in calls} == set(range(CALLERS)), output
    assert all(c["startedS"] < DURATION_S for c in calls)  # nobody starts a call after the run's end
    ttfa = [v for c in calls for v in c["ttfaMs"]]
    assert ttfa and all(0 < v < 20000 for v in ttfa), output
    assert loaded["calls"] == len(calls) and loaded["answers"] == len(ttfa)
    for q in (50, 95, 99):
        assert loaded[f"ttfaP{q}Ms"] == _percentile(ttfa, q)
    assert single["ttfaP95Ms"] == _percentile([v for c in report["singleCalls"] for v in c["ttfaMs"]], 95)
    for outcome, field in (("passed", "passed"), ("failed", "failed"), ("refused", "refused"), ("error", "errors")):
        assert loaded[field] == sum(1 for c in calls if c["outcome"] == outcome)
    buckets = report["overTime"]
    assert sum(b["callsStarted"] for b in buckets) == len(calls)
    assert sum(b["refusals"] for b in buckets) == loaded["refusals"] == sum(c["refusals"] for c in calls)
    print(f"{CALLERS} callers on {WORKERS * SLOTS_PER_WORKER} slots for {DURATION_S} s: {len(calls)} calls"
          f" ({loaded['passed']} passed, {loaded['failed']} failed, {loaded['refused']} never admitted,"
          f" {loaded['errors']} broke off), {loaded['refusals']} refusals; TTFA p50/p95/p99"
          f" {loaded['ttfaP50Ms']}/{loaded['ttfaP95Ms']}/{loaded['ttfaP99Ms']} ms against the single caller's"
          f" p50/p95 {single['ttfaP50Ms']}/{single['ttfaP95Ms']} ms (x{report['ttfaP95VsSingle']})")


def test_callers_over_the_slots_are_refused_and_wait_for_one(load_run):
    result, report = load_run
    calls = report["calls"]
    assert report["loaded"]["refusals"] > 0, result.stdout + result.stderr  # 20 callers, 12 slots
    waited = [c for c in calls if c["refusals"] and c["outcome"] != "refused"]
    assert waited, "no refused caller was admitted later"
    assert all(c["admissionWaitS"] > 0 for c in waited)
    never = [c for c in calls if c["outcome"] == "refused"]
    assert all(c["admissionWaitS"] is None and c["unansweredTurns"] == 0 and c["refusals"] for c in never), never
    print(f"{len(waited)} calls waited for a slot (admission p95 {report['loaded']['admissionWaitP95S']} s)")


def test_the_terminal_shows_the_load_beside_the_single_caller(load_run):
    result, report = load_run
    assert result.returncode == (0 if all(c["outcome"] == "passed" for c in report["calls"] + report["singleCalls"])
                                 else 1), result.stdout + result.stderr
    assert f"{'single caller':>14} {f'{CALLERS} callers':>14}" in result.stdout
    p95 = next(line for line in result.stdout.splitlines() if line.strip().startswith("TTFA p95 ms"))
    assert p95.split()[-2:] == [f"{report['single']['ttfaP95Ms']:.0f}", f"{report['loaded']['ttfaP95Ms']:.0f}"], p95
    assert "[load]" in result.stderr and "calls done" in result.stderr  # progress while it runs
    print(p95.strip())
