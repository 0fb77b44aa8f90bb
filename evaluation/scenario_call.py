"""One scenario as a real call: a session in eval mode through the gateway, a caller in the LiveKit room that
speaks each turn into silence (and over the agent where a barge-in says so), and a timeline of what the caller
heard. Judging happens afterwards (voxfleet.evaluation.expectations), from this timeline and the session's eval
results; nothing here reads the agent's logs or metrics.

Times are this process's ``time.monotonic()`` seconds; ``CallTimeline.wall`` turns them into epoch seconds to
line them up with the worker's eval record.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from voxfleet.devplatform.caller import Caller
from voxfleet.devplatform.heard_audio import HeardAudio
from voxfleet.devplatform.sessions_client import GatewayRefused, SessionGrant
from voxfleet.evaluation.eval_sessions import EvalResults, EvalSessions
from voxfleet.evaluation.scenario_models import CallerTurn, RunDefaults, Scenario
from voxfleet.evaluation.suite_loader import LoadedSuite

JOIN_TIMEOUT_S = 30.0
# A pause this long inside agent audio means it stopped: eSpeak's pauses between words stay under 0.15 s and
# between sentences near 0.3 s.
STOP_GAP_S = 0.4


@dataclass
class BargeInTimeline:
    said: str
    planned: float  # reply start + atMs
    started: float = 0.0  # the barge-in's first frame went out
    voice_started: float = 0.0  # its first voiced sample went out: where the barge-in begins, for the caller
    voice_ended: float = 0.0
    agent_was_speaking: bool = False  # agent audio was still coming when the barge-in began
    agent_last_voice: float | None = None  # the agent's last voiced frame before a STOP_GAP_S pause


@dataclass
class TurnTimeline:
    index: int
    said: str
    started: float
    voice_ended: float
    reply_start: float | None = None
    reply_end: float | None = None
    barge_in: BargeInTimeline | None = None
    agent_was_talking: bool = False  # agent audio was still coming when the caller's line ended
    ended: float = 0.0  # the agent had been quiet for replyQuietMs (or the turn gave up)
    simulated: bool = False  # the simulated caller chose this line
    played: CallerTurn | None = None  # the simulated caller's line as a turn (its interruption included)
    because: str = ""  # why it did (the script rule, or the LLM)

    @property
    def ttfa_s(self) -> float | None:
        return None if self.reply_start is None else self.reply_start - self.voice_ended


@dataclass
class SimulatedCallerTimeline:
    """How the simulated caller's part of the call went; judged afterwards against the caller's goal."""

    started: float  # its first line was about to be chosen
    ended_by: str = "error"  # goal, hung-up, gave-up, agent-left, turn-limit, error
    reason: str = ""  # in words, for the report
    lines: int = 0


@dataclass
class CallTimeline:
    scenario: Scenario
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    grant: SessionGrant | None = None
    granted: float = 0.0  # when the gateway granted the session (after any wait for a free slot)
    joined: float = 0.0
    greeting_start: float | None = None
    greeting_end: float | None = None
    turns: list[TurnTimeline] = field(default_factory=list)
    ended: float = 0.0
    error: str | None = None  # the call could not be placed or broke off: every unfinished turn fails with it
    results: EvalResults | None = None
    heard: HeardAudio | None = None  # everything the caller heard (for local recognition)
    sent: deque | None = None  # the caller's lines as sent, frame by frame with play-out times (for --save-audio)
    room_lines: list = field(default_factory=list)  # transcripts the agent published in the room, if any
    caller: SimulatedCallerTimeline | None = None  # the scenario's simulated caller, once it started

    def wall(self, monotonic: float) -> float:
        return monotonic + self.wall_offset


async def run_scenario(loaded: LoadedSuite, scenario: Scenario, sessions: EvalSessions, *,
                       on_turn: Callable[[CallTimeline, TurnTimeline], None] | None = None) -> CallTimeline:
    """Place the call and play the scenario; never raises for the agent's behaviour (that is for judging)."""
    timeline = CallTimeline(scenario=scenario)
    defaults = loaded.suite.defaults
    try:
        timeline.grant = await sessions.start(loaded.suite.agent, region=loaded.suite.region,
                                              metadata={"evalScenario": scenario.name[:100]})
        timeline.granted = time.monotonic()
    except GatewayRefused as refused:
        timeline.error = f"the gateway refused the session: {refused}"
        return timeline
    except (OSError, ValueError) as error:  # httpx connection errors are OSErrors
        timeline.error = f"cannot reach the gateway: {type(error).__name__}: {error}"
        return timeline
    caller = Caller(timeline.grant.url, timeline.grant.token, voice=defaults.voice, rate=defaults.rate)
    timeline.heard, timeline.sent = caller.heard, caller.sent
    tools = PendingTools(sessions, timeline)
    try:
        await caller.join()
        await _converse(caller, loaded, timeline, defaults, tools, sessions, on_turn)
    except TimeoutError as error:
        timeline.error = str(error)
    except Exception as error:  # noqa: BLE001 - a broken call is a failed scenario, not a crashed run
        timeline.error = f"the call broke off: {type(error).__name__}: {error}"[:500]
    finally:
        timeline.ended = time.monotonic()
        timeline.room_lines = caller.transcript_lines()
        await caller.leave()
        try:
            await sessions.end(timeline.grant.session_id)
            timeline.results = await sessions.results(timeline.grant.session_id)
        except (GatewayRefused, OSError, ValueError) as error:
            timeline.results = EvalResults(None, "unavailable", f"{type(error).__name__}: {error}"[:300])
    return timeline


class PendingTools:
    """Whether a tool call of the session may still bring an answer: one is running, or it ended after the agent
    last spoke. A filler phrase followed by a long pause is not the end of a reply while the tool works."""

    def __init__(self, sessions: EvalSessions, timeline: CallTimeline):
        self._sessions, self._timeline = sessions, timeline
        self._available = True  # False once the gateway has no record to give (no eval results for this agent)

    async def after(self, last_voice: float) -> bool:
        if not self._available or self._timeline.grant is None:
            return False
        record = await self._sessions.record_now(self._timeline.grant.session_id)
        if record is None:
            self._available = False
            return False
        quiet_since = self._timeline.wall(last_voice)
        return any(call.outcome == "running" or (call.ended_at or 0) > quiet_since for call in record.tool_calls)


async def _converse(caller: Caller, loaded: LoadedSuite, timeline: CallTimeline, defaults: RunDefaults,
                    tools: PendingTools, sessions: EvalSessions,
                    on_turn: Callable[[CallTimeline, TurnTimeline], None] | None) -> None:
    try:
        await asyncio.wait_for(caller.agent_joined.wait(), JOIN_TIMEOUT_S)
    except TimeoutError:
        raise TimeoutError(f"no agent joined the room within {JOIN_TIMEOUT_S:.0f} s") from None
    timeline.joined = time.monotonic()
    quiet_s = defaults.reply_quiet_ms / 1000
    answer_s = defaults.answer_timeout_ms / 1000
    heard_until = timeline.joined
    if timeline.scenario.wait_for_greeting:
        try:
            start = await first_voice_after(caller.heard, timeline.joined - 1.0, defaults.greeting_timeout_ms / 1000)
            timeline.greeting_start = start
            timeline.greeting_end = await quiet_after(caller.heard, start, quiet_s, timeout=answer_s * 3)
            heard_until = timeline.greeting_end
        except TimeoutError:
            pass  # an agent without a greeting waits for the caller
    for index, turn in enumerate(timeline.scenario.turns, start=1):
        # Speak only into silence: a line said over the agent would be a barge-in, not a turn.
        await quiet_after(caller.heard, heard_until, quiet_s, timeout=answer_s * 3)
        record = await play_turn(caller, loaded, index, turn, answer_s, quiet_s, tools)
        timeline.turns.append(record)
        heard_until = record.ended - quiet_s
        if on_turn is not None:
            on_turn(timeline, record)
    if timeline.scenario.caller is not None:
        # Imported here: the simulated caller listens through agent_speech, which reads this module's timeline.
        from voxfleet.evaluation.simulated_caller import simulate

        await simulate(caller, loaded, timeline, tools, sessions, heard_until, on_turn)


async def play_turn(caller: Caller, loaded: LoadedSuite, index: int, turn: CallerTurn, answer_s: float,
                    quiet_s: float, tools: PendingTools) -> TurnTimeline:
    """One turn: the line into silence, then the agent's whole answer (``answer_s``: how long to wait for it)."""
    spoken = await caller.play(loaded.audio_for(turn), text=turn.shown())
    record = TurnTimeline(index=index, said=turn.shown(), started=spoken.started, voice_ended=spoken.voice_ended)
    heard = caller.heard
    after = spoken.voice_ended
    try:
        # Agent audio already coming as the caller finishes is not this line's answer (a late answer to the last
        # turn, or talking over the caller): the answer is what follows once that stops.
        record.agent_was_talking = any(after - STOP_GAP_S < at <= after for at in heard.voiced_times(spoken.started))
        if record.agent_was_talking:
            after = await quiet_after(heard, after, STOP_GAP_S, timeout=answer_s * 3)
        record.reply_start = await first_voice_after(heard, after, answer_s)
    except TimeoutError:
        record.ended = time.monotonic()
        return record
    last_speech = record.reply_start
    if turn.barge_in is not None:
        barge = BargeInTimeline(said=turn.barge_in.shown(), planned=record.reply_start + turn.barge_in.at_ms / 1000)
        record.barge_in = barge
        await asyncio.sleep(max(0.0, barge.planned - time.monotonic()))
        timing = await caller.play(loaded.audio_for(turn.barge_in), wait=False, text=barge.said)
        await timing.done
        barge.started, barge.voice_started, barge.voice_ended = timing.started, timing.voice_started, timing.voice_ended
        # Timed from the caller's voice onset (a WAV may open with silence): that is when a person hears an
        # interruption begin, and what the agent's VAD can react to.
        onset = barge.voice_started
        barge.agent_was_speaking = any(onset - STOP_GAP_S < at <= onset + 0.05
                                       for at in heard.voiced_times(record.reply_start))
        if barge.agent_was_speaking:
            barge.agent_last_voice = await quiet_after(heard, onset, STOP_GAP_S, timeout=answer_s * 3)
        record.reply_end = barge.agent_last_voice or _last_voice_before(heard, onset)
        # The answer to the barge-in line starts after the agent stopped (or finished) the interrupted reply.
        answer_after = max(barge.voice_ended, (barge.agent_last_voice or onset) + 0.01)
        try:
            last_speech = await first_voice_after(heard, answer_after, answer_s)
        except TimeoutError:
            last_speech = answer_after
    end = await quiet_after(caller.heard, last_speech, quiet_s, timeout=answer_s * 3)
    while await tools.after(end):  # the tool's answer is still to come: keep listening
        try:
            end = await quiet_after(caller.heard, await first_voice_after(caller.heard, end, answer_s), quiet_s,
                                    timeout=answer_s * 3)
        except TimeoutError:
            break
    if record.reply_end is None:
        record.reply_end = await quiet_after(caller.heard, record.reply_start, quiet_s, timeout=answer_s * 3)
    record.ended = max(end, record.reply_end) + quiet_s
    return record


async def first_voice_after(heard: HeardAudio, after: float, timeout: float) -> float:
    """Arrival time of the first voiced agent frame after ``after``."""
    def probe() -> float | None:
        voiced = heard.voiced_times(after)
        return voiced[0] if voiced else None

    return await heard.wait_for(probe, timeout=timeout, what="agent speech")


async def quiet_after(heard: HeardAudio, after: float, gap_s: float, *, timeout: float) -> float:
    """The last voiced frame before the first pause of ``gap_s`` after ``after`` (``after`` itself when the agent
    was already quiet). Works on arrival times, so it finds the first pause even when asked late."""
    def probe() -> float | None:
        return first_pause(heard.voiced_times(after), after, gap_s, now=time.monotonic())

    return await heard.wait_for(probe, timeout=timeout, what=f"a {gap_s:.1f} s pause in the agent's speech")


def first_pause(voiced: list[float], after: float, gap_s: float, *, now: float) -> float | None:
    """Pure: given voiced-frame times after ``after``, the last one before the first gap of ``gap_s``."""
    last = after
    for at in voiced:
        if at - last >= gap_s:
            return last
        last = at
    return last if now - last >= gap_s else None


def _last_voice_before(heard: HeardAudio, at: float) -> float | None:
    earlier = [t for t in heard.voiced_times(0.0) if t <= at]
    return earlier[-1] if earlier else None
