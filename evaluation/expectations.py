"""Judging a call: each turn's expectations against what the caller heard and what the session recorded.

Every result says, in one sentence, what was expected and what happened instead, e.g.
"expected a call of lookup_order with {"order_id": "1234"}; this turn called no tool", or
"the agent kept talking for 2900 ms after the caller's voice began; expected it to stop within 300 ms".
Each turn also expects an answer at all ("answered"); a scenario that broke off fails its remaining turns with
the reason.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from voxfleet.api.eval_record import EvalToolCall
from voxfleet.evaluation.agent_speech import SpeechInWindow, Window, mentions, speech_in
from voxfleet.evaluation.report_models import (
    BargeInResult,
    ExpectationResult,
    ScenarioResult,
    SimulatedCallerResult,
    TimedLine,
    ToolCallSeen,
    TurnResult,
)
from voxfleet.evaluation.scenario_call import CallTimeline, TurnTimeline, first_pause
from voxfleet.evaluation.scenario_models import CallerGoal, CallerTurn, RunDefaults, ToolCallExpectation

WINDOW_MARGIN_S = 0.05
CLOCK_MARGIN_S = 0.05  # the caller's and the worker's clocks agree to about this (same host, or NTP)
MAX_SHOWN_CHARS = 160


def judge(timeline: CallTimeline, defaults: RunDefaults, *, recognise: bool = True) -> ScenarioResult:
    scenario = timeline.scenario
    grant = timeline.grant
    result = ScenarioResult(name=scenario.name, error=timeline.error,
                            session_id=grant.session_id if grant else None, region=grant.region if grant else None,
                            room=grant.room if grant else None,
                            duration_s=round(max(0.0, timeline.ended - timeline.joined), 2) if timeline.joined else 0.0)
    if timeline.results is not None:
        result.eval_results, result.eval_results_note = timeline.results.status, timeline.results.message
    starts = [t.started for t in timeline.turns] + [timeline.ended + 1.0]
    first_turn = starts[0] - WINDOW_MARGIN_S
    if timeline.joined:
        greeting = speech_in(timeline, Window(timeline.joined - 1.0, first_turn),
                             recognise=recognise and bool(scenario.greeting and scenario.greeting.mentions))
        result.greeting, result.greeting_heard = greeting.agent_text or None, timeline.greeting_start is not None
        if scenario.greeting is not None:
            result.greeting_expectations = [_mentioned(phrase, greeting, "greetingMentions", "the greeting")
                                            for phrase in scenario.greeting.mentions]
    for index, turn in enumerate(scenario.turns):
        if index < len(timeline.turns):
            window = Window(starts[index] - WINDOW_MARGIN_S, starts[index + 1] - WINDOW_MARGIN_S)
            result.turns.append(_judge_turn(timeline, timeline.turns[index], turn, window, defaults, recognise))
        else:
            result.turns.append(_unreached(index + 1, turn, timeline.error or "the call ended early"))
    for index in range(len(scenario.turns), len(timeline.turns)):
        # The simulated caller's lines: each must be answered (and within the suite's TTFA bound), like any turn.
        measured = timeline.turns[index]
        window = Window(starts[index] - WINDOW_MARGIN_S, starts[index + 1] - WINDOW_MARGIN_S)
        turn = _judge_turn(timeline, measured, measured.played or CallerTurn(say=measured.said), window, defaults,
                           recognise)
        turn.simulated, turn.because = True, measured.because
        result.turns.append(turn)
    if scenario.caller is not None:
        result.caller = _judge_caller(timeline, recognise)
    record = timeline.results.record if timeline.results else None
    if record is not None:
        result.agent_ttfa_ms = [round(latency.seconds * 1000, 1) for latency in record.agent_ttfa]
    if record is not None and timeline.joined:
        joined = timeline.wall(timeline.joined)
        result.transcript = [TimedLine(role=line.role, text=line.text, at_s=round(line.at - joined, 3))
                             for line in record.transcript]
    result.passed = (timeline.error is None and all(t.passed for t in result.turns)
                     and all(e.passed for e in result.greeting_expectations)
                     and (result.caller is None or result.caller.goal_reached))
    return result


def _judge_turn(timeline: CallTimeline, measured: TurnTimeline, turn: CallerTurn, window: Window,
                defaults: RunDefaults, recognise: bool) -> TurnResult:
    expect = turn.expect
    measured = _after_the_workers_answer(timeline, measured, window, defaults.reply_quiet_ms / 1000)
    speech = speech_in(timeline, window, recognise=recognise and bool(expect.mentions or expect.not_mentions))
    calls = _tool_calls_in(timeline, window)
    result = TurnResult(index=measured.index, said=measured.said, heard_as=speech.caller_heard_as,
                        agent_text=speech.agent_text, text_source=speech.source,
                        ttfa_ms=_ms(measured.ttfa_s), agent_ttfa_ms=_agent_ttfa_in(timeline, window),
                        tool_calls=[_seen(c) for c in calls] if calls is not None else [],
                        agent_was_talking=measured.agent_was_talking,
                        reply_ms=_ms(measured.reply_end - measured.reply_start)
                        if measured.reply_start is not None and measured.reply_end is not None else None)
    checks = [_answered(measured, defaults)]
    checks += [_mentioned(phrase, speech, "mentions", "the agent") for phrase in expect.mentions]
    checks += [_not_mentioned(phrase, speech) for phrase in expect.not_mentions]
    checks += [_tool_called(wanted, calls, timeline) for wanted in expect.tool_calls]
    if expect.no_tool_calls:
        checks.append(_no_tool_calls(calls, timeline))
    bound = expect.ttfa_max_ms if expect.ttfa_max_ms is not None else defaults.ttfa_max_ms
    if bound is not None:
        checks.append(_ttfa_within(measured, bound))
    if measured.barge_in is not None and turn.barge_in is not None:
        result.barge_in = _barge_in_result(timeline, measured, turn)
        if expect.stops_when_interrupted is not None:
            checks.append(_stopped(result.barge_in, expect.stops_when_interrupted, turn.barge_in.stop_within_ms))
    result.expectations = checks
    result.passed = all(c.passed for c in checks)
    result.timeline = _timeline(timeline, measured)
    return result


def _timeline(timeline: CallTimeline, measured: TurnTimeline) -> dict[str, float]:
    points = {"spoke": measured.started, "voiceEnded": measured.voice_ended, "reply": measured.reply_start,
              "replyEnd": measured.reply_end, "ended": measured.ended}
    if measured.barge_in is not None:
        points.update(bargeIn=measured.barge_in.voice_started, agentStopped=measured.barge_in.agent_last_voice)
    return {name: round(at - timeline.joined, 3) for name, at in points.items() if at}


def _judge_caller(timeline: CallTimeline, recognise: bool) -> SimulatedCallerResult:
    """The goal's rules over what the agent said and called from the simulated caller's first line to the end."""
    simulated = timeline.scenario.caller
    assert simulated is not None
    measured = timeline.caller
    result = SimulatedCallerResult(brain=simulated.brain.kind, goal=simulated.goal.description,
                                   max_turns=simulated.max_turns, ended_by="not-started",
                                   lines=measured.lines if measured else 0)
    if measured is None:
        result.reason = f"the simulated caller never spoke: {timeline.error or 'the call ended first'}"
        return result
    window = Window(measured.started - WINDOW_MARGIN_S, timeline.ended + 1.0)
    speech = speech_in(timeline, window, recognise=recognise and bool(simulated.goal.mentions))
    result.expectations = goal_checks(simulated.goal, speech, _tool_calls_in(timeline, window), timeline)
    result.goal_reached = all(e.passed for e in result.expectations)
    result.ended_by = measured.ended_by  # type: ignore[assignment]
    missed = [e.message for e in result.expectations if not e.passed]
    result.reason = measured.reason + ("" if not missed else "; goal not reached: " + "; ".join(missed))
    if result.goal_reached:
        result.expectations.append(ExpectationResult(kind="goalReached", passed=True, expected="goal reached",
                                                     actual=measured.ended_by, message=measured.reason))
    else:
        result.expectations.append(ExpectationResult(kind="goalReached", passed=False, expected="goal reached",
                                                     actual=measured.ended_by, message=result.reason))
    return result


def goal_checks(goal: CallerGoal, speech: SpeechInWindow, calls: list[EvalToolCall] | None,
                timeline: CallTimeline) -> list[ExpectationResult]:
    """The goal's rules; also what the simulated caller asks after each line to know whether it is done."""
    checks = [_tool_called(wanted, calls, timeline, kind="goalToolCall", during="the call")
              for wanted in goal.tool_calls]
    checks += [_mentioned(phrase, speech, "goalMentions", "the agent") for phrase in goal.mentions]
    return checks


def _unreached(index: int, turn: CallerTurn, reason: str) -> TurnResult:
    check = ExpectationResult(kind="answered", passed=False, expected="an answer", actual="not reached",
                              message=f"turn not reached: {reason}")
    return TurnResult(index=index, said=turn.shown(), expectations=[check], passed=False)


# --- the expectations ---------------------------------------------------------------------------------------

def _answered(measured: TurnTimeline, defaults: RunDefaults) -> ExpectationResult:
    if measured.reply_start is None:
        return ExpectationResult(kind="answered", passed=False, expected="an answer", actual="silence",
                                 message=f"no agent audio within {defaults.answer_timeout_ms / 1000:.0f} s after the"
                                         " caller finished speaking")
    return ExpectationResult(kind="answered", passed=True, expected="an answer", actual="answered",
                             message=f"answered after {measured.ttfa_s * 1000:.0f} ms")


def _mentioned(phrase: str, speech: SpeechInWindow, kind: str, who: str) -> ExpectationResult:
    said = _shown(speech.agent_text)
    if speech.source == "none":
        return ExpectationResult(kind=kind, passed=False, expected=f"mentions {phrase!r}", actual="no text",
                                 message=f"cannot tell whether {who} said {phrase!r}: no transcript of this stretch"
                                         " and no audio to recognise")
    found = mentions(speech.agent_text, phrase)
    source = "" if speech.source == "transcript" else f" ({speech.source})"
    if found:
        return ExpectationResult(kind=kind, passed=True, expected=f"mentions {phrase!r}", actual=said,
                                 message=f"{who} said {phrase!r}{source}")
    return ExpectationResult(kind=kind, passed=False, expected=f"mentions {phrase!r}", actual=said,
                             message=f"expected {who} to mention {phrase!r}; it said{source}: {said or '(nothing)'!r}")


def _not_mentioned(phrase: str, speech: SpeechInWindow) -> ExpectationResult:
    said = _shown(speech.agent_text)
    if speech.source == "none":
        return ExpectationResult(kind="notMentions", passed=False, expected=f"does not mention {phrase!r}",
                                 actual="no text", message=f"cannot tell whether the agent avoided {phrase!r}: no"
                                                           " transcript of this turn and no audio to recognise")
    if mentions(speech.agent_text, phrase):
        return ExpectationResult(kind="notMentions", passed=False, expected=f"does not mention {phrase!r}",
                                 actual=said, message=f"the agent said {phrase!r}, which it must not: {said!r}")
    return ExpectationResult(kind="notMentions", passed=True, expected=f"does not mention {phrase!r}", actual=said,
                             message=f"the agent did not say {phrase!r}")


def _tool_called(wanted: ToolCallExpectation, calls: list[EvalToolCall] | None, timeline: CallTimeline, *,
                 kind: str = "toolCall", during: str = "this turn") -> ExpectationResult:
    expected = f"{wanted.name}({_json(wanted.arguments)})"
    if calls is None:
        return ExpectationResult(kind=kind, passed=False, expected=expected, actual="unknown",
                                 message=f"cannot check the call of {wanted.name}: {_no_results(timeline)}")
    same_name = [c for c in calls if c.name == wanted.name]
    matching = [c for c in same_name if _includes(c.arguments, wanted.arguments)]
    if matching:
        call = matching[0]
        return ExpectationResult(kind=kind, passed=True, expected=expected, actual=_call_text(call),
                                 message=f"called {_call_text(call)} ({call.outcome})")
    if same_name:
        shown = "; ".join(_call_text(c) for c in same_name)
        differences = "; ".join(_differences(same_name[0].arguments, wanted.arguments))
        return ExpectationResult(kind=kind, passed=False, expected=expected, actual=shown,
                                 message=f"{wanted.name} was called with other arguments: {differences}")
    others = ", ".join(_call_text(c) for c in calls) or "no tool"
    return ExpectationResult(kind=kind, passed=False, expected=expected, actual=others,
                             message=f"expected a call of {expected}; {during} called {others}")


def _no_tool_calls(calls: list[EvalToolCall] | None, timeline: CallTimeline) -> ExpectationResult:
    if calls is None:
        return ExpectationResult(kind="noToolCalls", passed=False, expected="no tool call", actual="unknown",
                                 message=f"cannot check that no tool was called: {_no_results(timeline)}")
    if calls:
        shown = ", ".join(_call_text(c) for c in calls)
        return ExpectationResult(kind="noToolCalls", passed=False, expected="no tool call", actual=shown,
                                 message=f"expected no tool call; the agent called {shown}")
    return ExpectationResult(kind="noToolCalls", passed=True, expected="no tool call", actual="none",
                             message="no tool was called")


def _ttfa_within(measured: TurnTimeline, bound_ms: int) -> ExpectationResult:
    expected = f"TTFA <= {bound_ms} ms"
    if measured.ttfa_s is None:
        return ExpectationResult(kind="ttfaMax", passed=False, expected=expected, actual="no answer",
                                 message=f"no answer, so no TTFA within {bound_ms} ms")
    ttfa = measured.ttfa_s * 1000
    if ttfa <= bound_ms:
        return ExpectationResult(kind="ttfaMax", passed=True, expected=expected, actual=f"{ttfa:.0f} ms",
                                 message=f"TTFA {ttfa:.0f} ms is within {bound_ms} ms")
    return ExpectationResult(kind="ttfaMax", passed=False, expected=expected, actual=f"{ttfa:.0f} ms",
                             message=f"TTFA {ttfa:.0f} ms is over the bound of {bound_ms} ms"
                                     f" (+{ttfa - bound_ms:.0f} ms)")


def _barge_in_result(timeline: CallTimeline, measured: TurnTimeline, turn: CallerTurn) -> BargeInResult:
    barge = measured.barge_in
    assert barge is not None and turn.barge_in is not None and measured.reply_start is not None
    onset = barge.voice_started  # the caller's voice onset, as sent
    stopped_after = (barge.agent_last_voice - onset) * 1000 if barge.agent_last_voice is not None else None
    saw = None
    record = timeline.results.record if timeline.results else None
    if record is not None:
        start, end = timeline.wall(onset), timeline.wall(onset + turn.barge_in.stop_within_ms / 1000)
        saw = any(start - 0.5 <= at <= end for at in record.interruptions)
    return BargeInResult(said=barge.said, at_ms=turn.barge_in.at_ms,
                         started_after_reply_ms=round((onset - measured.reply_start) * 1000, 1),
                         agent_was_speaking=barge.agent_was_speaking,
                         agent_stopped_after_ms=round(max(0.0, stopped_after), 1) if stopped_after is not None
                         else None, worker_saw_interruption=saw)


def _stopped(barge: BargeInResult, must_stop: bool, within_ms: int) -> ExpectationResult:
    expected = f"stops within {within_ms} ms" if must_stop else "keeps talking"
    if not barge.agent_was_speaking:
        return ExpectationResult(kind="stopsWhenInterrupted", passed=False, expected=expected,
                                 actual="not speaking", message=(
                                     f"the agent had already finished its reply when the barge-in began"
                                     f" ({barge.started_after_reply_ms:.0f} ms after the reply started), so"
                                     " interrupting it was not tested: use a smaller atMs or a longer reply"))
    after = barge.agent_stopped_after_ms or 0.0
    stopped = after <= within_ms
    worker = "" if barge.worker_saw_interruption is None else (
        "; the session recorded an interruption" if barge.worker_saw_interruption
        else "; the session recorded no interruption")
    if stopped:
        actual = f"stopped after {after:.0f} ms"
        message = f"the agent stopped {after:.0f} ms after the caller's voice began{worker}"
    else:
        actual = f"kept talking {after:.0f} ms"
        message = f"the agent kept talking for {after:.0f} ms after the caller's voice began{worker}"
    if stopped == must_stop:
        return ExpectationResult(kind="stopsWhenInterrupted", passed=True, expected=expected, actual=actual,
                                 message=message)
    wanted = f"expected it to stop within {within_ms} ms" if must_stop else "expected it to keep talking"
    return ExpectationResult(kind="stopsWhenInterrupted", passed=False, expected=expected, actual=actual,
                             message=f"{message}; {wanted}")


# --- helpers ------------------------------------------------------------------------------------------------

def _tool_calls_in(timeline: CallTimeline, window: Window) -> list[EvalToolCall] | None:
    record = timeline.results.record if timeline.results else None
    if record is None:
        return None
    start, end = timeline.wall(window.start), timeline.wall(window.end)
    return [call for call in record.tool_calls if start <= call.started_at < end]


def _after_the_workers_answer(timeline: CallTimeline, measured: TurnTimeline, window: Window,
                              quiet_s: float) -> TurnTimeline:
    """A reply heard before the worker began its answer to the line is an earlier answer's audio (a reply whose
    audio stalled for longer than replyQuietMs on a starved worker, then resumed after the caller's next line):
    the line's reply is the audio heard once the worker started answering it (eval results only; barge-in turns
    keep the timing their barge-in was placed by)."""
    record = timeline.results.record if timeline.results else None
    if record is None or measured.reply_start is None or measured.barge_in is not None or timeline.heard is None:
        return measured
    start, end = timeline.wall(window.start), timeline.wall(window.end)
    answers = [latency.at for latency in record.agent_ttfa if start <= latency.at < end]
    if not answers or timeline.wall(measured.reply_start) >= answers[0] - CLOCK_MARGIN_S:
        return measured
    sent = answers[0] - timeline.wall_offset - CLOCK_MARGIN_S
    later = [at for at in timeline.heard.voiced_times(sent) if at < window.end]
    if not later:
        return measured
    reply_end = first_pause(timeline.heard.voiced_times(later[0]), later[0], quiet_s, now=window.end)
    return replace(measured, reply_start=later[0], agent_was_talking=True, reply_end=reply_end)


def _agent_ttfa_in(timeline: CallTimeline, window: Window) -> float | None:
    """The worker's TTFA of the turn's first answer (eval results), if it timed one."""
    record = timeline.results.record if timeline.results else None
    if record is None:
        return None
    start, end = timeline.wall(window.start), timeline.wall(window.end)
    inside = [latency for latency in record.agent_ttfa if start <= latency.at < end]
    return round(inside[0].seconds * 1000, 1) if inside else None


def _no_results(timeline: CallTimeline) -> str:
    results = timeline.results
    if results is None:
        return "the session has no eval results"
    return f"the gateway returned no eval results ({results.status}: {results.message or 'no details'})"


def _includes(actual: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(key in actual and actual[key] == value for key, value in wanted.items())


def _differences(actual: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for key, value in wanted.items():
        if key not in actual:
            out.append(f"{key} missing (expected {_json(value)})")
        elif actual[key] != value:
            out.append(f"{key} was {_json(actual[key])}, expected {_json(value)}")
    return out


def _seen(call: EvalToolCall) -> ToolCallSeen:
    return ToolCallSeen(name=call.name, arguments=call.arguments, outcome=call.outcome, error=call.error)


def _call_text(call: EvalToolCall) -> str:
    return f"{call.name}({_json(call.arguments)})"


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)[:200]


def _shown(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
