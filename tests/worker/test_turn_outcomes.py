"""The turn judge's definitions (docs/operations.md, "Turn success"), case by case, in process: each case is a
call's sequence of events and the outcomes it must produce. The real-call proof (a worker, a caller in a real
room, the counters on /metrics) is test_turn_outcomes_of_a_real_call in tests/worker/test_worker_turn_metrics.py."""

from __future__ import annotations

import pytest

from voxfleet.worker.telemetry.turn_outcomes import TurnJudge, repeats, words_of


def judged(*events: tuple) -> list[str]:
    outcomes: list[str] = []
    judge = TurnJudge(outcomes.append)
    for event, *args in events:
        if event == "turn":
            judge.caller_turn_ended(args[0])
        elif event == "agent":
            judge.agent_started_speaking()
        elif event == "agent-done":
            judge.agent_stopped_speaking()
        elif event == "end":
            judge.call_ended(caller_hung_up=args[0] == "caller-left")
    return outcomes


CASES = {
    "answered, then the caller moves on and leaves after the answer": (
        [("turn", "opening hours"), ("agent",), ("agent-done",), ("turn", "tell me a story"), ("agent",),
         ("agent-done",), ("end", "caller-left")], ["answered", "answered"]),
    "the caller repeats the question after the answer": (
        [("turn", "what are your opening hours"), ("agent",), ("agent-done",), ("turn", "your opening hours"),
         ("agent",), ("agent-done",), ("end", "caller-left")], ["repeated", "answered"]),
    "the caller hangs up mid-answer": (
        [("turn", "opening hours"), ("agent",), ("end", "caller-left")], ["hung_up"]),
    "the caller hangs up while still waiting": (
        [("turn", "opening hours"), ("end", "caller-left")], ["hung_up"]),
    "the caller goes on before any answer": (
        [("turn", "opening hours"), ("turn", "hello are you there"), ("agent",), ("agent-done",),
         ("end", "idle")], ["unanswered", "answered"]),
    "the platform ends the call before the answer is over": (
        [("turn", "opening hours"), ("agent",), ("end", "deleted")], ["unanswered"]),
    "a barge-in with new words: the interrupted answer had begun": (
        [("turn", "tell me a story"), ("agent",), ("turn", "no stop"), ("agent",), ("agent-done",),
         ("end", "caller-left")], ["answered", "answered"]),
    "turns without words (noise) and the greeting are not judged": (
        [("agent",), ("agent-done",), ("turn", ""), ("turn", "  "), ("end", "caller-left")], []),
    "one-word turns are never repeats": (
        [("turn", "yes"), ("agent",), ("agent-done",), ("turn", "yes"), ("agent",), ("agent-done",),
         ("end", "caller-left")], ["answered", "answered"]),
}


@pytest.mark.parametrize("name", CASES)
def test_turn_outcomes(name):
    events, expected = CASES[name]
    assert judged(*events) == expected


def test_repeats_compare_words_not_case_or_punctuation():
    assert repeats(words_of("What are your opening hours?"), words_of("what are your opening hours"))
    assert repeats(words_of("opening hours please"), words_of("opening hours"))
    assert not repeats(words_of("yes please"), words_of("yes please tell me a story"))  # a new request
    assert not repeats(words_of("opening hours"), words_of("tell me a story"))
    assert not repeats(words_of("hours"), words_of("hours"))
