"""The worker's pure parts: slot table, intent matching, grammar building, the scripted LLM's frames."""

from __future__ import annotations

import time

import pytest
from pipecat.frames.frames import (
    FunctionCallsStartedFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from voxfleet.api.voiceagent import Intent
from voxfleet.api.wire import DispatchRequest
from voxfleet.worker.providers.intent_matcher import IntentMatcher, fill, fill_arguments, normalise
from voxfleet.worker.providers.scripted_llm import ScriptedLLMService, speakable_result
from voxfleet.worker.providers.sphinx_grammar import build_grammar, phrases_from_intents
from voxfleet.worker.slots import SlotRefused, SlotTable


def request(session_id: str, room: str = "room-1") -> DispatchRequest:
    return DispatchRequest(session_id=session_id, tenant="acme", agent="concierge", region="us-east", room=room,
                           livekit_url="ws://127.0.0.1:1", livekit_token="t", agent_identity=f"agent-{session_id}")


class Holder:
    def __init__(self, req: DispatchRequest):
        self.request = req
        self.ended = False


def test_slots_claim_is_idempotent_bounded_and_refuses_when_full_or_draining():
    table: SlotTable[Holder] = SlotTable(2)
    first, created = table.claim(request("session-0001"), Holder)
    again, created_again = table.claim(request("session-0001"), Holder)
    assert created and not created_again and again is first and table.active == 1
    table.claim(request("session-0002", "room-2"), Holder)
    with pytest.raises(SlotRefused) as full:
        table.claim(request("session-0003", "room-3"), Holder)
    assert full.value.code == "worker_full" and table.active == 2
    with pytest.raises(SlotRefused) as conflict:
        table.claim(request("session-0001", "another-room"), Holder)
    assert conflict.value.code == "session_conflict"
    table.release("session-0001")
    assert table.active == 1 and table.free(ready=True) == 1
    ended, created = table.claim(request("session-0001"), Holder)
    assert ended is first and not created and table.active == 1  # an ended session is answered, not restarted
    table.draining = True
    with pytest.raises(SlotRefused) as draining:
        table.claim(request("session-0004", "room-4"), Holder)
    assert draining.value.code == "draining" and table.free(ready=True) == 0


def test_intents_match_keywords_and_re2_patterns_with_slots():
    matcher = IntentMatcher([
        Intent(name="hours", keywords=["opening hours", "open"], reply="We open at nine."),
        Intent(name="order", keywords=["order"], patterns=[r"order (number )?(?P<order_id>[0-9]{1,10})"],
               reply="Order {order_id}: {result}"),
    ])
    assert matcher.match("When are you OPEN?").intent.name == "hours"
    found = matcher.match("where is my order number one two three")
    assert found.intent.name == "order" and found.slots == {"order_id": "123"}
    assert matcher.match("order please").slots == {}
    assert matcher.match("tell me a joke") is None
    assert normalise("Order number 4 five, six!") == "order number 456"


def test_templates_fill_slots_only_and_never_evaluate():
    assert fill("Order {order_id}: {result}", {"order_id": "7", "result": "shipped"}) == "Order 7: shipped"
    assert fill("{0.__class__} {missing} {{x}}", {"x": "y"}) == "{0.__class__}  {y}"
    assert fill_arguments({"id": "{order_id}", "n": 2, "l": ["{order_id}"]}, {"order_id": "9"}) == \
        {"id": "9", "n": 2, "l": ["9"]}


def test_hostile_patterns_are_linear_time():
    evil = Intent(name="evil", patterns=["(a|aa)+c$"], reply="no")  # catastrophic for a backtracking engine
    started = time.perf_counter()
    assert IntentMatcher([evil]).match("a" * 1990 + " b") is None
    assert time.perf_counter() - started < 0.5


def test_grammar_from_intents_keeps_known_words_and_adds_digits_for_number_patterns():
    intents = [Intent(name="order", keywords=["where is my order", "voxfleetish"],
                      patterns=[r"order (?P<id>[0-9]+)"], reply="x")]
    grammar = build_grammar(phrases_from_intents(intents))
    assert "where is my order" in grammar.jsgf and "voxfleetish" not in grammar.jsgf
    assert {"seven", "order"} <= grammar.words
    with open(grammar.dictionary_path) as handle:
        assert {line.split()[0].split("(")[0] for line in handle} == set(grammar.words)


def test_speakable_result_prefers_the_runner_speech():
    assert speakable_result('{"speech": "It ships today.", "ok": true}') == "It ships today."
    assert speakable_result("plain words") == "plain words"


async def test_scripted_llm_streams_replies_and_calls_tools_through_pipecat_frames():
    intents = [Intent(name="hours", keywords=["hours"], reply="We are open from nine to six."),
               Intent(name="order", keywords=["order"], patterns=[r"order (?P<order_id>[0-9]+)"],
                      tool_call={"name": "lookup_order", "arguments": {"order_id": "{order_id}"}}, reply="{result}")]
    llm = ScriptedLLMService(intents)
    context = LLMContext(messages=[{"role": "user", "content": "what are your hours"}])
    down, _ = await run_test(llm, frames_to_send=[LLMContextFrame(context=context)],
                             expected_down_frames=None)
    texts = [f.text for f in down if isinstance(f, LLMTextFrame)]
    assert "".join(texts) == "We are open from nine to six." and len(texts) == 7
    kinds = [type(f) for f in down]
    assert kinds.index(LLMFullResponseStartFrame) < kinds.index(LLMTextFrame) < kinds.index(LLMFullResponseEndFrame)

    llm = ScriptedLLMService(intents)
    calls = []
    llm.register_function("lookup_order", lambda params: calls.append(dict(params.arguments)))
    context = LLMContext(messages=[{"role": "user", "content": "my order one two three"}])
    down, up = await run_test(llm, frames_to_send=[LLMContextFrame(context=context)], expected_down_frames=None,
                              expected_up_frames=None)
    started = [f for f in down + up if isinstance(f, FunctionCallsStartedFrame)]
    assert started and started[0].function_calls[0].arguments == {"order_id": "123"}
