"""The reply filler's rules, frame by frame through a real Pipecat pipeline (no room, no timing heard: the room
test is test_reply_filler.py): said once when the model is late, never for a fast answer, never twice in a
turn with a tool's filler, never after an interruption, never for a turn the model was not asked about; and the
spec refuses hostile values."""

from __future__ import annotations

import pytest
from pipecat.frames.frames import (
    FunctionCallsStartedFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSSpeakFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test
from pydantic import ValidationError

from voxfleet.api.voiceagent import ReplyFiller
from voxfleet.worker.reply_filler import ReplyFillerProcessor

FILLER = "One moment."
TURN = [UserStartedSpeakingFrame(), UserStoppedSpeakingFrame()]


async def _said(frames: list, *, after_ms: int = 100) -> list[str]:
    """What went to the TTS, in order: the filler (TTSSpeakFrame) and the answer's text."""
    down, _ = await run_test(ReplyFillerProcessor(ReplyFiller(afterMs=after_ms, say=FILLER)), frames_to_send=frames)
    return [frame.text for frame in down if isinstance(frame, (TTSSpeakFrame, LLMTextFrame))]


async def test_a_late_answer_gets_the_filler_once_before_it() -> None:
    said = await _said([*TURN, LLMFullResponseStartFrame(), SleepFrame(sleep=0.4), LLMTextFrame("Your order"),
                        LLMTextFrame(" shipped."), LLMFullResponseEndFrame()])
    assert said == [FILLER, "Your order", " shipped."], said


async def test_a_fast_answer_gets_no_filler() -> None:
    said = await _said([*TURN, LLMFullResponseStartFrame(), SleepFrame(sleep=0.02), LLMTextFrame("Hi."),
                        LLMFullResponseEndFrame(), SleepFrame(sleep=0.4)], after_ms=300)
    assert said == ["Hi."], said


async def test_a_tool_call_turn_keeps_to_the_tools_own_filler() -> None:
    # The model calls a tool at once; the tool is slow (its filler is said), and the answer after the result is
    # late too: still one filler in the turn, the tool's.
    said = await _said([*TURN, LLMFullResponseStartFrame(), FunctionCallsStartedFrame(function_calls=[]),
                        LLMFullResponseEndFrame(), SleepFrame(sleep=0.2), TTSSpeakFrame("Checking."),
                        SleepFrame(sleep=0.1), LLMFullResponseStartFrame(), SleepFrame(sleep=0.4),
                        LLMTextFrame("Found it."), LLMFullResponseEndFrame()])
    assert said == ["Checking.", "Found it."], said


async def test_an_interruption_cancels_a_pending_filler() -> None:
    said = await _said([*TURN, LLMFullResponseStartFrame(), SleepFrame(sleep=0.03), InterruptionFrame(),
                        SleepFrame(sleep=0.4)])
    assert said == [], said


async def test_each_turn_gets_its_own_chance_and_only_one() -> None:
    late = [LLMFullResponseStartFrame(), SleepFrame(sleep=0.3), LLMTextFrame("Yes."), LLMFullResponseEndFrame()]
    said = await _said([*TURN, *late, *TURN, *late])
    assert said == [FILLER, "Yes.", FILLER, "Yes."], said


async def test_no_filler_without_a_caller_turn_or_when_switched_off() -> None:
    # A response nobody asked for (e.g. a greeting through the model) and afterMs 0.
    assert await _said([LLMFullResponseStartFrame(), SleepFrame(sleep=0.3), LLMFullResponseEndFrame()]) == []
    assert await _said([*TURN, LLMFullResponseStartFrame(), SleepFrame(sleep=0.3), LLMFullResponseEndFrame()],
                       after_ms=0) == []


async def test_the_bound_counts_from_the_end_of_the_callers_turn() -> None:
    # The model was asked 150 ms after the turn ended (a slow STT final): the filler comes at 200 ms after the turn
    # end, i.e. 50 ms after the ask, before the answer at 250 ms after the ask.
    said = await _said([*TURN, SleepFrame(sleep=0.15), LLMFullResponseStartFrame(), SleepFrame(sleep=0.1),
                        LLMTextFrame("Ok."), LLMFullResponseEndFrame()], after_ms=200)
    assert said == [FILLER, "Ok."], said


@pytest.mark.parametrize("bad", [{"afterMs": -1}, {"afterMs": 10001}, {"afterMs": "1500ms"}, {"afterMs": 1.5},
                                 {"say": ""}, {"say": "x" * 301}, {"say": None}, {"sayy": "typo"}])
def test_hostile_reply_filler_values_are_refused(bad: dict) -> None:
    # Worst case accepted: 300 characters said once per caller turn (as much as one short answer).
    with pytest.raises(ValidationError):
        ReplyFiller.model_validate(bad)
