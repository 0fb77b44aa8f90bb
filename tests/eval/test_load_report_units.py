"""The load report's arithmetic and the load options' refusals, without calls: figures recomputable from the
calls, slices that add up, and `--load` options that are refused with exit 2 and a message naming them."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.eval.eval_platform import REPO
from voxfleet.evaluation.load_report import LoadCall, figures, over_time, ratio

VOXFLEET = str(REPO / ".venv" / "bin" / "voxfleet")
SUITE = str(REPO / "examples" / "scenarios" / "offline-demo.yaml")


def _call(started_s: float, outcome: str = "passed", ttfa=(500.0,), refusals: int = 0, wait: float | None = 0.1):
    return LoadCall(caller=0, scenario="s", started_s=started_s, admission_wait_s=wait, outcome=outcome,
                    ttfa_ms=list(ttfa), refusals=refusals, unanswered_turns=0 if ttfa else 1)


def test_figures_are_the_calls_percentiles_and_counts():
    rng = np.random.default_rng(7)
    calls = [_call(i * 0.5, ttfa=list(rng.uniform(300, 2000, 3))) for i in range(40)]
    calls += [_call(3, "refused", ttfa=(), refusals=4, wait=None), _call(4, "failed", ttfa=(900.0,), refusals=1),
              _call(5, "error", ttfa=())]
    result = figures(calls, ran_s=30.0)
    ttfa = [v for c in calls for v in c.ttfa_ms]
    assert (result.calls, result.passed, result.failed, result.refused, result.errors) == (43, 40, 1, 1, 1)
    assert result.refusals == 5 and result.answers == len(ttfa) and result.unanswered_turns == 2
    for q, value in ((50, result.ttfa_p50_ms), (95, result.ttfa_p95_ms), (99, result.ttfa_p99_ms)):
        assert value == round(float(np.percentile(ttfa, q)), 1)
    assert result.ttfa_max_ms == round(max(ttfa), 1) and result.calls_per_minute == 86.0


def test_no_calls_give_empty_figures_not_errors():
    result = figures([], ran_s=0.0)
    assert (result.calls, result.ttfa_p95_ms, result.calls_per_minute) == (0, None, 0.0)
    assert ratio(None, 500.0) is None and ratio(900.0, 0.0) is None and ratio(900.0, 600.0) == 1.5


def test_slices_add_up_and_late_calls_join_the_last():
    calls = [_call(t, refusals=1) for t in (0.0, 4.9, 5.0, 29.0, 61.0)]
    buckets = over_time(calls, duration_s=60.0)
    assert len(buckets) == 12 and buckets[0].from_s == 0 and buckets[-1].to_s == 60.0
    assert [b.calls_started for b in buckets][:2] == [2, 1] and buckets[-1].calls_started == 1
    assert sum(b.calls_started for b in buckets) == 5 == sum(b.refusals for b in buckets)
    assert len(over_time(calls, duration_s=10.0)) == 2  # slices are at least 5 s long


@pytest.mark.parametrize("args, message", [
    (["--load", "0"], "--load must be 1 to 100 callers, not 0"),
    (["--load", "101"], "--load must be 1 to 100 callers, not 101"),
    (["--load", "5", "--duration", "2"], "--duration must be 5 to 3600 seconds, not 2"),
    (["--load", "5", "--duration", "86400"], "--duration must be 5 to 3600 seconds, not 86400"),
    (["--load", "5", "--junit", "x.xml", "--retries", "1"], "--load does not go with --junit, --retries"),
])
def test_bad_load_options_are_refused_naming_the_option(args, message, tmp_path):
    run = subprocess.run([VOXFLEET, "eval", SUITE, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 2 and message in run.stderr, run.stderr
