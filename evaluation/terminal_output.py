"""What `voxfleet eval` prints: a progress bar while calls run (stderr), then a table per scenario and turn
(pass/fail, TTFA, what each side said, why a turn failed), the summary and the baseline comparison (stdout);
for a load run (--load), its figures beside the single-caller run's and the run over time.

The bar redraws in place on a terminal; in CI logs (no TTY) it prints one line per finished scenario instead.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from voxfleet.evaluation.load_report import LoadReport
from voxfleet.evaluation.report_models import RunReport, ScenarioResult

BAR_WIDTH = 24
SAID_WIDTH = 34


class ProgressBar:
    def __init__(self, scenarios: int, turns: int, *, stream: TextIO = sys.stderr, enabled: bool = True):
        self.scenarios_total, self.turns_total = scenarios, turns
        self.scenarios_done = self.turns_done = self.failed_turns = self.running = 0
        self.stream = stream
        self.enabled = enabled
        self.live = enabled and stream.isatty()
        self.started = time.monotonic()

    def scenario_started(self) -> None:
        self.running += 1
        self._draw()

    def turn_done(self, answered: bool) -> None:
        self.turns_done += 1
        self.failed_turns += 0 if answered else 1
        self._draw()

    def retrying(self, turns: int) -> None:
        self.turns_total += turns
        self.scenarios_total += 1
        self._draw()

    def scenario_done(self, name: str, summary: str) -> None:
        self.running -= 1
        self.scenarios_done += 1
        if self.enabled and not self.live:
            print(f"[eval] {self.scenarios_done}/{self.scenarios_total} {name}: {summary}", file=self.stream,
                  flush=True)
        self._draw()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.live:
            return
        share = self.turns_done / self.turns_total if self.turns_total else 1.0
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        line = (f"[eval] [{bar}] {self.turns_done}/{self.turns_total} turns  {self.scenarios_done}/"
                f"{self.scenarios_total} scenarios  {self.running} calling  {self.failed_turns} unanswered  "
                f"{time.monotonic() - self.started:.0f}s")
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r\033[K" + line[: width - 1])
        self.stream.flush()


def render_report(report: RunReport, *, color: bool = False) -> str:
    paint = _painter(color)
    lines: list[str] = []
    for scenario in report.scenarios:
        lines += _scenario_table(scenario, paint)
        lines.append("")
    s = report.summary
    flaky = f" ({s.scenarios_flaky} only when run again)" if s.scenarios_flaky else ""
    lines.append(paint("bold", f"{s.scenarios_passed}/{s.scenarios} scenarios passed{flaky}, {s.turns_passed}/{s.turns}"
                               f" turns ({s.turn_success_rate:.0%}), {s.failed_expectations}/{s.expectations}"
                               f" expectations failed"))
    if s.ttfa_count:
        lines.append(f"TTFA over {s.ttfa_count} answers: p50 {s.ttfa_p50_ms:.0f} ms, p95 {s.ttfa_p95_ms:.0f} ms,"
                     f" max {s.ttfa_max_ms:.0f} ms (caller-heard, end of speech to first audio)")
    if s.agent_ttfa_count:
        transport = f"; the caller hears answers p50 {s.transport_p50_ms:.0f} ms later" \
            if s.transport_p50_ms is not None else ""
        lines.append(f"worker-measured TTFA over {s.agent_ttfa_count} answers: p50 {s.agent_ttfa_p50_ms:.0f} ms,"
                     f" p95 {s.agent_ttfa_p95_ms:.0f} ms{transport}")
    if report.baseline is not None:
        comparison = report.baseline
        if comparison.passed:
            lines.append(paint("green", f"no regression against the baseline {comparison.baseline}"))
        for regression in comparison.regressions:
            lines.append(paint("red", f"REGRESSION: {regression.message}"))
        for key in comparison.newly_failing:
            lines.append(paint("red", f"  newly failing: {key}"))
        for key in comparison.fixed:
            lines.append(paint("green", f"  fixed since the baseline: {key}"))
    return "\n".join(lines)


def _scenario_table(scenario: ScenarioResult, paint) -> list[str]:
    verdict = paint("green", "PASS") if scenario.passed else paint("red", "FAIL")
    flaky = paint("red", " (flaky: passed when run again)") if scenario.flaky else ""
    where = ", ".join(x for x in (scenario.region, f"session {scenario.session_id[:12]}…" if scenario.session_id
                                  else None) if x)
    lines = [paint("bold", f"{verdict} {scenario.name}") + flaky + (f"  ({where})" if where else "")]
    for number, earlier in enumerate(scenario.earlier_attempts, start=1):
        lines.append(paint("red", f"  attempt {number} failed: " + "; ".join(
            ([earlier.error] if earlier.error else []) + [f.message for f in earlier.failed])[:300]))
    if scenario.error:
        lines.append(paint("red", f"  call: {scenario.error}"))
    if scenario.eval_results not in ("returned", "none"):
        lines.append(f"  eval results: {scenario.eval_results} ({scenario.eval_results_note[:160]})")
    if scenario.greeting_heard or scenario.greeting:
        lines.append(f"  greeting: {_clip(scenario.greeting or '(heard, no transcript)', 100)}")
    for failed in (e for e in scenario.greeting_expectations if not e.passed):
        lines.append(paint("red", f"      x greeting: {failed.message}"))
    lines.append(f"  {'#':>2}  {'result':<6}  {'TTFA':>8}  {'caller said':<{SAID_WIDTH}}  agent said")
    for turn in scenario.turns:
        result = paint("green", "pass  ") if turn.passed else paint("red", "FAIL  ")
        ttfa = f"{turn.ttfa_ms:.0f} ms" if turn.ttfa_ms is not None else "-"
        said = _clip(turn.said, SAID_WIDTH)
        agent = _clip(turn.agent_text, 70) if turn.agent_text else ("(spoke; no transcript)" if turn.ttfa_ms
                                                                    is not None else "(silence)")
        lines.append(f"  {turn.index:>2}  {result}  {ttfa:>8}  {said:<{SAID_WIDTH}}  {agent}")
        if turn.simulated:
            lines.append(f"      simulated caller: {_clip(turn.because, 80)}")
        if turn.agent_was_talking:
            lines.append("      note: the agent was still talking when the caller finished this line")
        if turn.barge_in is not None:
            barge = turn.barge_in
            stop = (f"agent stopped after {barge.agent_stopped_after_ms:.0f} ms" if barge.agent_stopped_after_ms
                    is not None else "agent was already quiet")
            lines.append(f"      barge-in at {barge.started_after_reply_ms:.0f} ms: {_clip(barge.said, 40)!r}; {stop}")
        for call in turn.tool_calls:
            lines.append(f"      tool {call.name}({_clip(str(call.arguments), 60)}) {call.outcome}")
        for failed in (e for e in turn.expectations if not e.passed):
            lines.append(paint("red", f"      x {failed.kind}: {failed.message}"))
    if scenario.caller is not None:
        caller = scenario.caller
        verdict = paint("green", "goal reached") if caller.goal_reached else paint("red", "goal NOT reached")
        lines.append(f"  caller ({caller.brain}, {caller.lines}/{caller.max_turns} lines): {verdict}, ended by"
                     f" {caller.ended_by}: {_clip(caller.reason, 200)}")
        for failed in (e for e in caller.expectations if not e.passed and e.kind != "goalReached"):
            lines.append(paint("red", f"      x {failed.kind}: {failed.message}"))
    if scenario.rubric is not None:
        verdict = paint("green", "PASS") if scenario.rubric.passed else paint("red", "FAIL")
        lines.append(f"  rubric: {verdict}, {_clip(scenario.rubric.message, 200)}")
    return lines


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _painter(color: bool):
    codes = {"red": "31", "green": "32", "bold": "1"}

    def paint(style: str, text: str) -> str:
        return f"\033[{codes[style]}m{text}\033[0m" if color else text

    return paint


def render_load_report(report: LoadReport, *, color: bool = False) -> str:
    """The load run: its figures beside the single-caller run's, then the run over time and what broke."""
    paint = _painter(color)

    def shown(value, unit: str = "") -> str:
        return "-" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"

    rows = [("calls", "calls"), ("passed", "passed"), ("failed", "failed"), ("never admitted", "refused"),
            ("broke off", "errors"), ("429/503 refusals", "refusals"), ("answers timed", "answers"),
            ("unanswered turns", "unanswered_turns"), ("TTFA p50 ms", "ttfa_p50_ms"), ("TTFA p95 ms", "ttfa_p95_ms"),
            ("TTFA p99 ms", "ttfa_p99_ms"), ("TTFA max ms", "ttfa_max_ms"),
            ("admission wait p95 s", "admission_wait_p95_s"), ("calls per minute", "calls_per_minute")]
    loaded_title = f"{report.callers} callers"
    lines = [paint("bold", f"load: {report.callers} callers for {report.duration_s:.0f} s against agent"
                           f" {report.agent} ({report.ran_s:.0f} s with the last calls)"),
             f"  {'':22} {'single caller':>14} {loaded_title:>14}"]
    for title, field in rows:
        single, loaded = getattr(report.single, field), getattr(report.loaded, field)
        digits = {"admission_wait_p95_s": 2, "calls_per_minute": 1}.get(field)
        if digits:
            single, loaded = (None if v is None else f"{v:.{digits}f}" for v in (single, loaded))
        lines.append(f"  {title:22} {shown(single):>14} {shown(loaded):>14}")
    if report.ttfa_p95_vs_single is not None:
        lines.append(f"  TTFA p95 under load is {report.ttfa_p95_vs_single:.2f}x the single caller's"
                     f" (caller-heard, end of speech to first audio)")
    lines += ["", f"  {'from s':>7} {'to s':>6} {'calls':>6} {'passed':>7} {'failed':>7} {'refusals':>9}"
                  f" {'TTFA p50':>9} {'p95':>6}"]
    for b in report.over_time:
        lines.append(f"  {b.from_s:7.0f} {b.to_s:6.0f} {b.calls_started:6d} {b.passed:7d} {b.failed:7d}"
                     f" {b.refusals:9d} {shown(b.ttfa_p50_ms):>9} {shown(b.ttfa_p95_ms):>6}")
    broken = [c for c in [*report.single_calls, *report.calls] if c.outcome in ("error", "refused")]
    for call in broken[:5]:
        lines.append(paint("red", f"  caller {call.caller}, {call.scenario} at {call.started_s:.0f} s:"
                                  f" {call.outcome}: {call.error}"))
    if len(broken) > 5:
        lines.append(paint("red", f"  ... and {len(broken) - 5} more calls that were refused or broke off"))
    verdict = "every call passed" if report.passed else "some calls did not pass (see the report's calls)"
    lines.append(paint("green" if report.passed else "red", verdict))
    return "\n".join(lines)
