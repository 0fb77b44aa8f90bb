"""Understanding in a real call (issue 20), judged by the caller in the room: a spoken order number reaches a
real tool HTTP server as digits ("seven three oh one" -> "7301") and its answer is heard; an off-script line gets
the retry line, a second one in a row the handoff line."""

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


@pytest.mark.xfail(strict=False, reason="measured 2026-12-04 with the shared world: the worker's grammar decoder"
                   " heard 'seven three oh one' as 2301 and turned the first off-script line into 'order 8' (a"
                   " tool call), the room's audio is rougher than the corpus's; the recogniser, not the matcher,"
                   " is the gap (see worker/README.md, Understanding)")
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
                asked = await caller.say("where is my order seven three oh one")
                answer = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=15)
                first = await caller.say("the weather is lovely today isn't it")
                retry = await caller.wait_for_agent_speech(after=first.voice_ended, timeout=15)
                second = await caller.say("my dog just ran into the garden")
                handoff = await caller.wait_for_agent_speech(after=second.voice_ended, timeout=15)
            calls = tools.calls("/orders/lookup")
            print(f"tool received {[c.json() for c in calls]}; heard: {recogniser.recognise(answer.pcm)!r} | "
                  f"{recogniser.recognise(retry.pcm)!r} | {recogniser.recognise(handoff.pcm)!r}")
            assert [c.json() for c in calls] == [{"order_id": "7301"}]
            assert recogniser.contains(answer.pcm, SHIPPED), recogniser.recognise(answer.pcm)
            assert recogniser.contains(retry.pcm, RETRY), recogniser.recognise(retry.pcm)
            assert recogniser.contains(handoff.pcm, HANDOFF), recogniser.recognise(handoff.pcm)
        finally:
            worker.stop()
