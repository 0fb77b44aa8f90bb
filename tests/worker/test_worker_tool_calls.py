"""A full offline conversation with a tool call: a real worker calls a real local HTTP tool server.

The caller hears the filler phrase while the slow tool runs, cannot barge in on a non-interruptible tool (the
filler plays to its end, the tool runs exactly once), and then hears the tool's answer; all judged from the
audio in the room.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.callers.caller_bot import CallerBot, Recogniser, mint_token, synthesize
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

GREETING = "Hello, thank you for calling. How can I help you today?"
FILLER = "One moment while I check your order."
SHIPPED = "Your order has shipped and arrives tomorrow morning."
TOOL_DELAY_S = 2.5


def spec(tool_url: str) -> dict:
    return offline_spec(
        greeting=GREETING,
        tools=[{"name": "lookup_order", "description": "Look up an order.",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                               "required": ["order_id"]},
                "http": {"url": tool_url, "method": "POST", "timeoutMs": 8000},
                "interruptible": False, "idempotent": False,
                "filler": {"afterMs": 300, "say": FILLER}}],
        intents=[{"name": "order", "keywords": ["order status"],
                  "toolCall": {"name": "lookup_order", "arguments": {"order_id": "42"}}, "reply": "{result}"},
                 {"name": "stop", "keywords": ["no stop"], "reply": "Okay, I will stop."}],
        turnDetection={"detector": "speech-timeout",
                       "vad": {"stopMs": 200, "startMs": 32, "minVolumePercent": 30, "confidencePercent": 60},
                       "timeouts": {"speechTimeoutMs": 300}})


async def test_slow_non_interruptible_tool_gets_a_filler_blocks_barge_in_and_runs_once(livekit, tmp_path):
    region = livekit["us-east"]
    with LocalHTTPServer(lambda request: Reply(body={"speech": SHIPPED}, delay_s=TOOL_DELAY_S)) as tools:
        worker = WorkerUnderTest.start(tmp_path, spec(f"{tools.url}/orders/lookup"), livekit=region)
        try:
            room = f"room-{uuid.uuid4().hex[:10]}"
            assert worker.dispatch(room=room).status_code == 201
            recogniser = Recogniser([GREETING, FILLER, SHIPPED, "Okay, I will stop."])
            token = mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}")
            async with CallerBot(region.url, token) as caller:
                await caller.wait_for_agent_speech(timeout=20)
                asked = await caller.say("order status")
                filler = await caller.heard.wait_for(
                    lambda: (caller.voiced_frames(asked.voice_ended) or [None])[0], timeout=10, what="the answer")
                # Talk over the filler: with a non-interruptible tool running, the agent must not stop.
                await asyncio.sleep(max(0.0, filler + 0.3 - time.monotonic()))
                barge = await caller.say("no stop")
                filler_heard = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=10, silence_s=0.3)
                answer = await caller.wait_for_agent_speech(after=filler_heard.end + 0.05, timeout=15)
            filler_length = len(synthesize(FILLER)) / 16000
            assert filler_heard.start < barge.voice_started < filler_heard.end  # the caller did talk over it
            assert filler_heard.duration >= 0.8 * filler_length, (filler_heard.duration, filler_length)
            assert recogniser.contains(filler_heard.pcm, FILLER), recogniser.recognise(filler_heard.pcm)
            assert recogniser.contains(answer.pcm, SHIPPED), recogniser.recognise(answer.pcm)
            assert answer.start - asked.voice_ended >= TOOL_DELAY_S  # the answer came from the tool
            calls = tools.calls("/orders/lookup")
            assert len(calls) == 1 and calls[0].json() == {"order_id": "42"}
        finally:
            worker.stop()
