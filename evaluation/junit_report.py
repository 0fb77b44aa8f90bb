"""JUnit XML for CI dashboards: one test case per scenario turn (and greeting), failures carrying the
expectation messages, and a "baseline" case that fails on a regression."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from voxfleet.evaluation.report_models import RunReport, ScenarioResult, TurnResult

MAX_NAME_CHARS = 120


def junit_xml(report: RunReport) -> str:
    suites = ElementTree.Element("testsuites", name="voxfleet eval")
    suite = ElementTree.SubElement(suites, "testsuite", name=f"{report.agent} ({Path(report.suite).name})",
                                   timestamp=report.started_at.isoformat(timespec="seconds"),
                                   time=f"{report.duration_s:.3f}")
    for scenario in report.scenarios:
        if scenario.greeting_expectations:
            failed = [e for e in scenario.greeting_expectations if not e.passed]
            _case(suite, report.agent, scenario, "greeting", 0.0, failed,
                  f"agent said: {scenario.greeting or '(no transcript)'}")
        for turn in scenario.turns:
            _turn_case(suite, report.agent, scenario, turn)
        if scenario.caller is not None:
            caller = scenario.caller
            failed = [e for e in caller.expectations if not e.passed]
            _case(suite, report.agent, scenario, f"caller goal: {caller.goal}", scenario.duration_s, failed,
                  f"simulated caller ({caller.brain}): {caller.lines}/{caller.max_turns}"
                  f" lines, ended by {caller.ended_by}: {caller.reason}")
    if report.baseline is not None:
        case = ElementTree.SubElement(suite, "testcase", classname=f"{report.agent}.baseline",
                                      name=f"compared with {Path(report.baseline.baseline).name}", time="0")
        if not report.baseline.passed:
            failure = ElementTree.SubElement(case, "failure", type="regression",
                                             message=report.baseline.regressions[0].message)
            lines = [r.message for r in report.baseline.regressions]
            lines += [f"newly failing: {key}" for key in report.baseline.newly_failing]
            failure.text = "\n".join(lines)
    cases = suite.findall("testcase")
    counts = {"tests": len(cases), "failures": sum(1 for c in cases if c.find("failure") is not None),
              "errors": sum(1 for c in cases if c.find("error") is not None), "skipped": 0}
    for element in (suite, suites):
        for key, value in counts.items():
            element.set(key, str(value))
    suites.set("time", f"{report.duration_s:.3f}")
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _turn_case(suite: ElementTree.Element, agent: str, scenario: ScenarioResult, turn: TurnResult) -> None:
    name = f"turn {turn.index}: {turn.said}"
    ttfa = f"{turn.ttfa_ms:.0f} ms" if turn.ttfa_ms is not None else "no answer"
    simulated = f" (simulated: {turn.because})" if turn.simulated else ""
    out = (f"caller said{simulated}: {turn.said}\nagent heard: {turn.heard_as or '-'}\n"
           f"agent said ({turn.text_source}): {turn.agent_text or '-'}\nTTFA: {ttfa}")
    if turn.tool_calls:
        out += "\ntool calls: " + ", ".join(f"{c.name}({c.arguments}) {c.outcome}" for c in turn.tool_calls)
    failed = [e for e in turn.expectations if not e.passed]
    reached = not (failed and failed[0].actual == "not reached")
    _case(suite, agent, scenario, name, (turn.reply_ms or 0.0) / 1000, failed, out, error=not reached)


def _case(suite: ElementTree.Element, agent: str, scenario: ScenarioResult, name: str, seconds: float,
          failed: list, out: str, *, error: bool = False) -> None:
    case = ElementTree.SubElement(suite, "testcase", classname=f"{agent}.{scenario.name}",
                                  name=name[:MAX_NAME_CHARS], time=f"{seconds:.3f}")
    if failed:
        element = ElementTree.SubElement(case, "error" if error else "failure",
                                         type="call" if error else failed[0].kind, message=failed[0].message)
        element.text = "\n".join(f"[{e.kind}] {e.message}" for e in failed)
    system_out = ElementTree.SubElement(case, "system-out")
    system_out.text = out


def write_junit(report: RunReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(report))
    return path
