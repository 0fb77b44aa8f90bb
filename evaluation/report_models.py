"""The JSON report of an eval run (`--report`): every scenario, turn and expectation with what was measured,
the run's summary figures, and the comparison with a baseline. A saved report is also what `--baseline` reads.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from voxfleet.api.model_base import ApiModel

REPORT_FORMAT = "voxfleet-eval-report/v1"

ExpectationKind = Literal["answered", "mentions", "notMentions", "toolCall", "noToolCalls", "stopsWhenInterrupted",
                          "ttfaMax", "greetingMentions", "goalToolCall", "goalMentions", "goalReached", "rubric"]
TextSource = Literal["transcript", "room", "recognised", "none"]


class ExpectationResult(ApiModel):
    kind: ExpectationKind
    passed: bool
    expected: str = Field(description="What the scenario asked for.")
    actual: str = Field(description="What the call showed.")
    message: str = Field(description="One sentence: what differed (or what matched).")


class ToolCallSeen(ApiModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    outcome: str = ""
    error: str | None = None


class BargeInResult(ApiModel):
    said: str
    at_ms: int = Field(description="Planned: this far into the agent's reply.")
    started_after_reply_ms: float = Field(description="Measured: when the caller's voice really began, after the"
                                                      " reply's first audio heard.")
    agent_was_speaking: bool = Field(description="The agent was still talking when the barge-in began.")
    agent_stopped_after_ms: float | None = Field(
        default=None, description="From the caller's voice onset (as sent) to the agent's last audio before it"
                                  " went quiet (as heard).")
    worker_saw_interruption: bool | None = Field(
        default=None, description="The session's eval record shows the agent stopped for the caller (none:"
                                  " no eval results).")


class TimedLine(ApiModel):
    role: Literal["caller", "agent"]
    text: str
    at_s: float = Field(description="Seconds since the agent joined the room.")


class TurnResult(ApiModel):
    index: int = Field(description="1-based turn number.")
    said: str = Field(description="The caller's line (or WAV file).")
    heard_as: str | None = Field(default=None, description="What the agent's speech-to-text made of it.")
    agent_text: str = Field(default="", description="What the agent said during the turn.")
    text_source: TextSource = Field(default="none", description="Where agent_text comes from: the session's eval"
                                                                " transcript, the room's transcripts, local"
                                                                " recognition of the audio, or nowhere.")
    ttfa_ms: float | None = Field(default=None, description="End of the caller's speech -> first agent audio"
                                                            " heard (none: no answer).")
    agent_ttfa_ms: float | None = Field(default=None, description="The same answer's TTFA as the worker measured"
                                                                  " it (from the eval results): what the agent"
                                                                  " took, without the network legs.")
    reply_ms: float | None = Field(default=None, description="How long the agent's reply lasted as heard.")
    agent_was_talking: bool = Field(default=False, description="Agent audio of an earlier answer was still coming"
                                                               " when the caller finished the line (a late or"
                                                               " stalled answer, or talking over the caller); the"
                                                               " reply is what came after.")
    barge_in: BargeInResult | None = None
    tool_calls: list[ToolCallSeen] = Field(default_factory=list)
    expectations: list[ExpectationResult] = Field(default_factory=list)
    passed: bool = False
    timeline: dict[str, float] = Field(default_factory=dict, description="Seconds since the agent joined: when the"
                                                                         " caller spoke and the agent answered.")
    simulated: bool = Field(default=False, description="The simulated caller chose this line.")
    because: str = Field(default="", description="Why the simulated caller said it (script rule, LLM).")


class SimulatedCallerResult(ApiModel):
    """The simulated caller's part of the call, judged against its goal."""

    brain: Literal["scripted", "openai"]
    goal: str = Field(description="The goal in words.")
    lines: int = Field(description="Lines the caller said.")
    max_turns: int
    ended_by: Literal["goal", "hung-up", "gave-up", "agent-left", "turn-limit", "error", "not-started"] = Field(
        description="goal: its rules were met during the call; hung-up: the caller left (script or LLM);"
                    " gave-up: the agent was silent past the caller's patience; agent-left; turn-limit.")
    reason: str = Field(default="", description="How the call ended, in words.")
    goal_reached: bool = False
    expectations: list[ExpectationResult] = Field(default_factory=list,
                                                  description="The goal's rules over the caller's part of the call.")


class FailedExpectation(ApiModel):
    key: str = Field(description="scenario/turn N/what was expected")
    message: str


class EarlierAttempt(ApiModel):
    """A failed attempt of a scenario that was run again (--retries)."""

    session_id: str | None = None
    error: str | None = None
    failed: list[FailedExpectation] = Field(default_factory=list)


class ScenarioResult(ApiModel):
    name: str
    passed: bool = False
    flaky: bool = Field(default=False, description="Failed first, passed when run again.")
    earlier_attempts: list[EarlierAttempt] = Field(default_factory=list,
                                                   description="Failed attempts before this, final, one.")
    error: str | None = Field(default=None, description="Why the call could not be placed or broke off.")
    session_id: str | None = None
    region: str | None = None
    room: str | None = None
    duration_s: float = 0.0
    eval_results: str = Field(default="none", description="'returned', or the gateway's reason for none.")
    eval_results_note: str = ""
    greeting: str | None = None
    greeting_heard: bool = False
    greeting_expectations: list[ExpectationResult] = Field(default_factory=list)
    turns: list[TurnResult] = Field(default_factory=list)
    caller: SimulatedCallerResult | None = None
    rubric: ExpectationResult | None = Field(default=None, description="The rubric's judge: `actual` is its"
                                                                       " reason in its own words.")
    transcript: list[TimedLine] = Field(default_factory=list, description="The session's eval transcript, timed"
                                                                          " like the turns' timelines.")
    agent_ttfa_ms: list[float] = Field(default_factory=list, description="Every answer's TTFA as the worker"
                                                                        " measured it (eval results).")

    def expectations(self) -> list[tuple[str, ExpectationResult]]:
        """Every expectation with a stable key (scenario / turn / what was expected) for baselines."""
        found = [(f"{self.name}/greeting/{e.expected}", e) for e in self.greeting_expectations]
        for turn in self.turns:
            found += [(f"{self.name}/turn {turn.index}/{e.expected}", e) for e in turn.expectations]
        if self.caller is not None:
            found += [(f"{self.name}/caller goal/{e.expected}", e) for e in self.caller.expectations]
        if self.rubric is not None:
            found.append((f"{self.name}/rubric", self.rubric))
        return found

    def as_earlier_attempt(self) -> EarlierAttempt:
        return EarlierAttempt(session_id=self.session_id, error=self.error, failed=[
            FailedExpectation(key=key, message=e.message) for key, e in self.expectations() if not e.passed])


class RunSummary(ApiModel):
    scenarios: int = 0
    scenarios_passed: int = 0
    scenarios_flaky: int = Field(default=0, description="Passed only when run again.")
    turns: int = 0
    turns_passed: int = 0
    turn_success_rate: float = 0.0
    expectations: int = 0
    failed_expectations: int = 0
    ttfa_count: int = 0
    ttfa_mean_ms: float | None = None
    ttfa_p50_ms: float | None = None
    ttfa_p95_ms: float | None = None
    ttfa_max_ms: float | None = None
    agent_ttfa_count: int = Field(default=0, description="Answers the workers timed (eval results).")
    agent_ttfa_mean_ms: float | None = None
    agent_ttfa_p50_ms: float | None = None
    agent_ttfa_p95_ms: float | None = None
    transport_p50_ms: float | None = Field(default=None, description="Median of heard minus worker TTFA per turn:"
                                                                     " the network legs (and any input backlog).")


class Regression(ApiModel):
    metric: Literal["ttfaP95", "turnSuccessRate", "failedExpectations"]
    baseline: float
    current: float
    allowed: float = Field(description="The worst value the tolerances accept.")
    message: str


class BaselineComparison(ApiModel):
    baseline: str = Field(description="The baseline report file.")
    passed: bool
    regressions: list[Regression] = Field(default_factory=list)
    newly_failing: list[str] = Field(default_factory=list, description="Expectations that passed in the baseline.")
    fixed: list[str] = Field(default_factory=list, description="Expectations that failed in the baseline.")


class RunReport(ApiModel):
    format: Literal["voxfleet-eval-report/v1"] = REPORT_FORMAT
    suite: str
    agent: str
    gateway: str
    started_at: datetime
    duration_s: float
    concurrency: int
    retries: int = 0
    summary: RunSummary
    scenarios: list[ScenarioResult]
    baseline: BaselineComparison | None = None

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.scenarios)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), so small runs give stable figures."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(scenarios: list[ScenarioResult]) -> RunSummary:
    turns = [t for s in scenarios for t in s.turns]
    expectations = [e for s in scenarios for _, e in s.expectations()]
    ttfas = [t.ttfa_ms for t in turns if t.ttfa_ms is not None]
    passed_turns = sum(1 for t in turns if t.passed)
    agent = [v for s in scenarios for v in s.agent_ttfa_ms]
    transport = [t.ttfa_ms - t.agent_ttfa_ms for t in turns if t.ttfa_ms is not None and t.agent_ttfa_ms is not None]
    return RunSummary(
        scenarios=len(scenarios), scenarios_passed=sum(1 for s in scenarios if s.passed),
        scenarios_flaky=sum(1 for s in scenarios if s.flaky), turns=len(turns),
        turns_passed=passed_turns, turn_success_rate=round(passed_turns / len(turns), 4) if turns else 0.0,
        expectations=len(expectations), failed_expectations=sum(1 for e in expectations if not e.passed),
        ttfa_count=len(ttfas), ttfa_mean_ms=_round(sum(ttfas) / len(ttfas)) if ttfas else None,
        ttfa_p50_ms=_round(percentile(ttfas, 50)), ttfa_p95_ms=_round(percentile(ttfas, 95)),
        ttfa_max_ms=_round(max(ttfas)) if ttfas else None, agent_ttfa_count=len(agent),
        agent_ttfa_mean_ms=_round(sum(agent) / len(agent)) if agent else None,
        agent_ttfa_p50_ms=_round(percentile(agent, 50)), agent_ttfa_p95_ms=_round(percentile(agent, 95)),
        transport_p50_ms=_round(percentile(transport, 50)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
