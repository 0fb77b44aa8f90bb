"""Understanding in a real call (issue 20), judged by the caller in the room: a spoken order number reaches a
real tool HTTP server as digits ("one oh two four" -> "1024") and its answer is heard; an off-script line gets
the retry line, a second one in a row the handoff line.

The order number is "one oh two four", not the "seven three oh one" first written here: on the test caller's
eSpeak voice (en-us, 175 wpm) PocketSphinx's "seven" is on a knife edge ("two one" or "seven" from the same audio
with a slightly different cepstral mean; worker/README.md, Understanding), while "one oh two four" came out
1024 in every variant measured. The off-script lines are ones the phone-loop check rejects; "the weather is
lovely today isn't it" is not among them: the grammar heard it as "order eight oh three two" with a score close
to real order lines' (the README says so)."""

from __future__ import annotations

import uuid

import pytest

from tests.callers.caller_bot import CallerBot, Recogniser, mint_token
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(240)]

GREETING = "Hello, thank you for calling. How can I help you today?"
SHIPPED = "Your order has shipped and arrives tomorrow morning."
RETRY = "Sorry, could you say that again?"
HANDOFF = "Sorry, I can't help with that. Let me get someone who can."


def spec(tool_url: str) -> dict:
    return offline_spec(
        greeting=GREETING,
        pipeline={"stt": {"provider": "pocketsphinx", "options": {"rejection": "phone-loop"}},
                  "llm": {"provider": "scripted"}, "tts": {"provider": "espeak", "voice": "en-us"}},
        tools=[{"name": "lookup_order", "description": "Look up an order.",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                               "required": ["order_id"]},
                "http": {"url": tool_url, "method": "POST", "timeoutMs": 8000}}],
        intents=[{"name": "order-status", "keywords": ["order", "where is my order"],
                  "patterns": [r"(order|number)\D{0,24}?(?P<order_id>[0-9]{1,10})"],
                  "toolCall": {"name": "lookup_order", "arguments": {"order_id": "{order_id}"}},
                  "reply": "{result}", "correctable": True},
                 {"name": "hours", "keywords": ["opening hours"], "reply": "We are open from nine to six."}],
        noMatch={"retry": RETRY, "maxRetries": 1, "handoff": HANDOFF})


async def test_spoken_number_reaches_the_tool_and_off_script_lines_get_retry_then_handoff(livekit, tmp_path):
    region = livekit["us-east"]
    with LocalHTTPServer(lambda request: Reply(body={"speech": SHIPPED})) as tools:
        worker = WorkerUnderTest.start(tmp_path, spec(f"{tools.url}/orders/lookup"), livekit=region)
        try:
            room = f"room-{uuid.uuid4().hex[:10]}"
            assert worker.dispatch(room=room).status_code == 201
            recogniser = Recogniser([GREETING, SHIPPED, RETRY, HANDOFF])
            token = mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}")
            async with CallerBot(region.url, token) as caller:
                await caller.wait_for_agent_speech(timeout=20)
                asked = await caller.say("where is my order one oh two four")
                answer = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=15)
                first = await caller.say("I need a human")
                retry = await caller.wait_for_agent_speech(after=first.voice_ended, timeout=15)
                second = await caller.say("my dog just ran into the garden")
                handoff = await caller.wait_for_agent_speech(after=second.voice_ended, timeout=15)
            received = [call.json() for call in tools.calls("/orders/lookup")]
            heard = [recogniser.recognise(utterance.pcm) for utterance in (answer, retry, handoff)]
            print(f"tool received {received}; caller heard: answer {heard[0]!r} | after the first off-script line"
                  f" {heard[1]!r} | after the second {heard[2]!r}")
            assert received == [{"order_id": "1024"}]
            assert recogniser.contains(answer.pcm, SHIPPED), heard[0]
            assert recogniser.contains(retry.pcm, RETRY), heard[1]
            assert recogniser.contains(handoff.pcm, HANDOFF), heard[2]
        finally:
            worker.stop()
