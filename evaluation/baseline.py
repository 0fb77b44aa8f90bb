"""Comparing a run with a saved baseline report: TTFA p95, turn success rate and failed expectations, each
against the suite's tolerances. A regression names the figure, both values and the allowance, e.g.
"TTFA p95 rose from 640 ms to 910 ms (+270 ms); the tolerance allows up to 790 ms".
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from voxfleet.evaluation.report_models import BaselineComparison, Regression, RunReport
from voxfleet.evaluation.scenario_models import Tolerances

MAX_BASELINE_BYTES = 16 << 20


class BaselineError(ValueError):
    """The baseline file cannot be used; the message says why."""


def load_baseline(path: Path) -> RunReport:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise BaselineError(f"{path}: cannot read the baseline ({error.strerror or error})") from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise BaselineError(f"{path}: larger than {MAX_BASELINE_BYTES >> 20} MiB; is it an eval report?")
    try:
        return RunReport.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise BaselineError(f"{path}: not a voxfleet eval report (write one with `voxfleet eval --report`):"
                            f" {str(error)[:300]}") from None


def compare(current: RunReport, baseline: RunReport, tolerances: Tolerances, *,
            baseline_name: str) -> BaselineComparison:
    now, then = current.summary, baseline.summary
    regressions: list[Regression] = []
    if now.ttfa_p95_ms is not None and then.ttfa_p95_ms is not None:
        allowance = max(tolerances.ttfa_p95_increase_ms, then.ttfa_p95_ms * tolerances.ttfa_p95_increase_percent / 100)
        allowed = then.ttfa_p95_ms + allowance
        if now.ttfa_p95_ms > allowed:
            regressions.append(Regression(
                metric="ttfaP95", baseline=then.ttfa_p95_ms, current=now.ttfa_p95_ms, allowed=round(allowed, 1),
                message=f"TTFA p95 rose from {then.ttfa_p95_ms:.0f} ms to {now.ttfa_p95_ms:.0f} ms"
                        f" (+{now.ttfa_p95_ms - then.ttfa_p95_ms:.0f} ms); the tolerance allows up to"
                        f" {allowed:.0f} ms"))
    floor = then.turn_success_rate - tolerances.turn_success_rate_drop
    if now.turns and now.turn_success_rate < floor - 1e-9:
        regressions.append(Regression(
            metric="turnSuccessRate", baseline=then.turn_success_rate, current=now.turn_success_rate,
            allowed=round(floor, 4),
            message=f"turn success rate fell from {then.turn_success_rate:.1%} to {now.turn_success_rate:.1%}"
                    f" ({now.turns_passed}/{now.turns} turns passed); the tolerance allows down to {floor:.1%}"))
    ceiling = then.failed_expectations + tolerances.failed_expectations_increase
    if now.failed_expectations > ceiling:
        regressions.append(Regression(
            metric="failedExpectations", baseline=then.failed_expectations, current=now.failed_expectations,
            allowed=ceiling,
            message=f"failed expectations rose from {then.failed_expectations} to {now.failed_expectations};"
                    f" the tolerance allows {ceiling}"))
    failed_now = {key for s in current.scenarios for key, e in s.expectations() if not e.passed}
    passed_now = {key for s in current.scenarios for key, e in s.expectations() if e.passed}
    failed_then = {key for s in baseline.scenarios for key, e in s.expectations() if not e.passed}
    passed_then = {key for s in baseline.scenarios for key, e in s.expectations() if e.passed}
    return BaselineComparison(baseline=baseline_name, passed=not regressions, regressions=regressions,
                              newly_failing=sorted(failed_now & passed_then),
                              fixed=sorted(failed_then & passed_now))
