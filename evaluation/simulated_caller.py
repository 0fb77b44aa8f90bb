"""The simulated caller's part of a call: it hears the agent, picks its next line (script or LLM), says it with
eSpeak into silence like a fixed turn, and goes on until its goal's rules are met, it hangs up, the agent goes
silent past its patience or leaves, or it has said `maxTurns` lines.

It hears the agent the way judging does (agent_speech.speech_in): the session's eval record as it stands, else
the room's transcripts, else local recognition of the audio (in a thread: it is slow). The goal is checked
after every answer with the same rules the report judges by, so the caller stops when a judge would say done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

from voxfleet.api.eval_record import EvalToolCall
from voxfleet.devplatform.caller import Caller
from voxfleet.evaluation.agent_speech import SpeechInWindow, Window, speech_in
from voxfleet.evaluation.caller_script import CallerLine, Exchange, ScriptedCaller
from voxfleet.evaluation.eval_sessions import EvalResults, EvalSessions
from voxfleet.evaluation.expectations import goal_checks
from voxfleet.evaluation.llm_caller import LLMCaller
from voxfleet.evaluation.llm_endpoint import LLMEndpointError
from voxfleet.evaluation.llm_keys import LLMKeyError, read_api_key
from voxfleet.evaluation.scenario_call import (
    CallTimeline,
    PendingTools,
    SimulatedCallerTimeline,
    TurnTimeline,
    play_turn,
    quiet_after,
)
from voxfleet.evaluation.scenario_models import CallerTurn, ScriptedBrain, SimulatedCaller, TurnExpectations
from voxfleet.evaluation.suite_loader import LoadedSuite

WINDOW_MARGIN_S = 0.05


def brain_for(simulated: SimulatedCaller, loaded: LoadedSuite) -> ScriptedCaller | LLMCaller:
    if isinstance(simulated.brain, ScriptedBrain):
        return ScriptedCaller(simulated.brain)
    return LLMCaller(simulated, read_api_key(simulated.brain, loaded.path.parent))


async def simulate(caller: Caller, loaded: LoadedSuite, timeline: CallTimeline, tools: PendingTools,
                   sessions: EvalSessions, heard_until: float,
                   on_turn: Callable[[CallTimeline, TurnTimeline], None] | None) -> None:
    simulated = timeline.scenario.caller
    assert simulated is not None
    defaults = loaded.suite.defaults
    quiet_s = defaults.reply_quiet_ms / 1000
    patience_s = (simulated.patience_ms or defaults.answer_timeout_ms) / 1000
    outcome = SimulatedCallerTimeline(started=time.monotonic())
    timeline.caller = outcome
    try:
        brain = brain_for(simulated, loaded)
    except LLMKeyError as error:
        outcome.reason = str(error)
        return
    # What the agent said before the first line: its greeting, or its answer to the last fixed turn.
    since = timeline.turns[-1].started if timeline.turns else timeline.joined - 1.0
    greeting, _ = await _heard(timeline, caller, sessions, Window(since, time.monotonic()), outcome)
    conversation = [Exchange("agent", greeting)] if greeting else []
    try:
        while True:
            if outcome.lines >= simulated.max_turns:
                outcome.ended_by = "turn-limit"
                outcome.reason = f"the caller said {outcome.lines} lines (its maxTurns) without reaching its goal"
                return
            try:
                line = await brain.next_line(conversation)
            except LLMEndpointError as error:
                outcome.reason = str(error)
                return
            if line is None:
                outcome.ended_by = "hung-up"
                outcome.reason = f"the caller hung up after {outcome.lines} lines: it had nothing more to say"
                return
            turn = await _say(caller, loaded, timeline, line, heard_until, patience_s, quiet_s, tools, on_turn)
            outcome.lines += 1  # the closing line, said once the goal is reached, does not count against maxTurns
            heard_until = turn.ended - quiet_s
            conversation.append(Exchange("caller", line.text))
            if line.interrupt is not None:
                conversation.append(Exchange("caller", line.interrupt.say))
            if turn.reply_start is None:
                outcome.ended_by = "gave-up"
                outcome.reason = (f"the agent said nothing for {patience_s:.0f} s after {line.text!r} (line"
                                  f" {outcome.lines}): the caller hung up")
                return
            heard, calls = await _heard(timeline, caller, sessions, Window(turn.started, time.monotonic()),
                                        outcome)
            conversation.append(Exchange("agent", heard))
            if _goal_met(timeline, conversation, calls):
                outcome.ended_by = "goal"
                outcome.reason = f"the goal was reached after {outcome.lines} lines"
                closing = await brain.closing_line()
                if closing:
                    await _say(caller, loaded, timeline, CallerLine(closing, because="goal reached: closing line"),
                               heard_until, patience_s, quiet_s, tools, on_turn)
                return
            if line.hang_up_after:
                outcome.ended_by = "hung-up"
                outcome.reason = f"the caller hung up after line {outcome.lines} ({line.because})"
                return
            if caller.agent_left.is_set():
                outcome.ended_by = "agent-left"
                outcome.reason = f"the agent left the call after line {outcome.lines}"
                return
    finally:
        await brain.aclose()


async def _say(caller: Caller, loaded: LoadedSuite, timeline: CallTimeline, line: CallerLine, heard_until: float,
               patience_s: float, quiet_s: float, tools: PendingTools,
               on_turn: Callable[[CallTimeline, TurnTimeline], None] | None) -> TurnTimeline:
    """The line as a turn: spoken into silence, the agent's whole answer waited for (or patience run out)."""
    await quiet_after(caller.heard, heard_until, quiet_s, timeout=patience_s * 3)
    interrupt = line.interrupt
    played = CallerTurn(say=line.text) if interrupt is None else CallerTurn(
        say=line.text, barge_in=interrupt.as_barge_in(), expect=TurnExpectations(stops_when_interrupted=True))
    turn = await play_turn(caller, loaded, len(timeline.turns) + 1, played, patience_s, quiet_s, tools)
    turn.simulated, turn.because, turn.played = True, line.because, played
    timeline.turns.append(turn)
    if on_turn is not None:
        on_turn(timeline, turn)
    return turn


async def _heard(timeline: CallTimeline, caller: Caller, sessions: EvalSessions, window: Window,
                 outcome: SimulatedCallerTimeline) -> tuple[str, list[EvalToolCall] | None]:
    """What the agent said in the window, and every tool call since the simulated caller began (None: no record)."""
    assert timeline.grant is not None
    record = await sessions.record_now(timeline.grant.session_id)
    now = replace(timeline, results=EvalResults(record, "returned") if record is not None else None,
                  room_lines=caller.transcript_lines())
    speech = await asyncio.to_thread(speech_in, now, Window(window.start - WINDOW_MARGIN_S, window.end),
                                     recognise=True)
    calls = None
    if record is not None:
        since = timeline.wall(outcome.started - WINDOW_MARGIN_S)
        calls = [call for call in record.tool_calls if call.started_at >= since]
    return speech.agent_text, calls


def _goal_met(timeline: CallTimeline, conversation: list[Exchange], calls: list[EvalToolCall] | None) -> bool:
    """The goal's rules over the caller's part so far: tool calls from the record, mentions from every answer
    since the caller's first line (the words may come over several answers)."""
    simulated = timeline.scenario.caller
    assert simulated is not None
    first = next(i for i, exchange in enumerate(conversation) if exchange.role == "caller")
    said = " ".join(e.text for e in conversation[first:] if e.role == "agent" and e.text)
    speech = SpeechInWindow(said, "transcript" if said else "none")
    return all(check.passed for check in goal_checks(simulated.goal, speech, calls, timeline))
