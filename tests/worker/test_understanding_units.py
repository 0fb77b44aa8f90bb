"""Understanding a caller (issue 20), without audio: spoken numbers to digits, the honest no-match (coverage),
the retry-then-handoff count, corrections, and the cost bound on hostile text."""

from __future__ import annotations

import time

import pytest

from voxfleet.api.voiceagent import Intent, NoMatch
from voxfleet.worker.providers.intent_matcher import MAX_NUMBER_DIGITS, normalise
from voxfleet.worker.providers.scripted_llm import ScriptedLLMService, Understanding

ORDER = Intent.model_validate({"name": "order-status", "keywords": ["order", "where is my order"],
                               "patterns": [r"(order|number)\D{0,24}?(?P<order_id>[0-9]{1,10})"],
                               "toolCall": {"name": "lookup_order", "arguments": {"order_id": "{order_id}"}},
                               "correctable": True})
HOURS = Intent.model_validate({"name": "hours", "keywords": ["opening hours", "open", "hours", "close"],
                               "reply": "We are open from nine to six."})


@pytest.mark.parametrize("said, digits", [
    ("seven three oh one", "7301"), ("seventy three oh one", "7301"), ("double four", "44"),
    ("double four six", "446"), ("triple nine", "999"), ("twenty five ten", "2510"), ("fifty two", "52"),
    ("one oh oh seven", "1007"), ("three hundred and five", "305"), ("one hundred", "100"),
    ("two thousand and twelve", "2012"), ("nineteen eighty four", "1984"), ("zero one", "01"),
    ("7 three 0 one", "7301"), ("twenty", "20"), ("sixty oh", "600"), ("eleven", "11")])
def test_spoken_numbers_become_digits(said, digits):
    assert normalise(f"my order is {said} please") == f"my order is {digits} please"


def test_words_around_numbers_stay_words():
    assert normalise("O K, a hundred times") == "o k a hundred times"
    assert normalise("Order number 4 five, six!") == "order number 456"


def test_a_hostile_number_run_is_bounded_in_length_and_time():
    text = " ".join(["double nine twenty hundred"] * 2000)
    started = time.perf_counter()
    out = normalise(text)
    elapsed = time.perf_counter() - started
    print(f"normalise of {len(text)} chars: {elapsed * 1000:.1f} ms, longest token {max(map(len, out.split()))}")
    assert max(map(len, out.split())) <= MAX_NUMBER_DIGITS
    assert elapsed < 1.0


def test_a_spoken_order_number_fills_the_tool_argument():
    match = Understanding([ORDER, HOURS]).understand("where is my order seventy three oh one")
    assert match.intent.name == "order-status" and match.slots == {"order_id": "7301"}


def test_forced_keyword_soup_is_not_understood():
    # What the grammar decoder made of "can I speak to a real person" and "what time do you close today".
    understanding = Understanding([ORDER, HOURS])
    assert understanding.understand("two three oh close oh") is None
    assert understanding.understand("two two close two three") is None
    assert understanding.understand("what are your opening hours").intent.name == "hours"


def test_a_correction_reruns_the_correctable_intent_with_the_new_value():
    understanding = Understanding([ORDER, HOURS])
    assert understanding.understand("where is my order seven three oh one").slots == {"order_id": "7301"}
    fixed = understanding.understand("no, I said seven three oh two")
    assert fixed.intent.name == "order-status" and fixed.slots == {"order_id": "7302"} and fixed.corrected
    again = understanding.understand("sorry I meant seven three oh three")
    assert again.slots == {"order_id": "7303"}


def test_no_correction_without_a_correctable_intent_before_it():
    plain = ORDER.model_copy(update={"correctable": False})
    understanding = Understanding([plain, HOURS])
    understanding.understand("where is my order seven three oh one")
    assert understanding.understand("no, I said seven three oh two") is None
    assert Understanding([ORDER, HOURS]).understand("no, I said seven three oh two") is None


async def _answers(service: ScriptedLLMService, turns: list[str]) -> list[str]:
    said = []
    for text in turns:
        spoken: list[str] = []

        async def capture(token: str, spoken=spoken) -> None:
            spoken.append(token)

        service._push_llm_text = capture
        await service._respond(_Context([{"role": "user", "content": text}]))
        said.append("".join(spoken))
    return said


class _Context:
    def __init__(self, messages):
        self._messages = messages

    def get_messages(self):
        return self._messages


async def test_retry_then_handoff_then_understood_resets_the_count():
    no_match = NoMatch(retry="Could you say that again?", max_retries=1, handoff="Let me get someone.")
    service = ScriptedLLMService([HOURS], no_match=no_match)
    said = await _answers(service, ["two three oh oh", "eight oh two", "opening hours", "six six"])
    assert said == ["Could you say that again?", "Let me get someone.", "We are open from nine to six.",
                    "Could you say that again?"]


def test_no_match_lines_are_bounded_by_the_spec():
    with pytest.raises(ValueError):
        NoMatch(retry="x" * 1001)
    with pytest.raises(ValueError):
        NoMatch(max_retries=6)
    with pytest.raises(ValueError):
        Intent.model_validate({"name": "x", "keywords": ["a"], "reply": "b", "correctable": "maybe"})
