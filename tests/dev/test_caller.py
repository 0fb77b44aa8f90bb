"""The caller `voxfleet call` is built on, in a real LiveKit room with a scripted agent whose reply delay is known:
the TTFA it measures must follow that delay, both sides' transcripts must land on the right side, and the
agent's audio it records must say what the agent said."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.callers.recogniser import Recogniser
from tests.dev.room_agent import RoomAgent, mint_token
from voxfleet.devplatform.caller import Caller
from voxfleet.devplatform.conversation import Line, collect_late_transcripts, converse

GREETING = "Hello, this is the test line."
ANSWERS = ["We are open every day from nine to six.", "Thanks for calling. Goodbye!"]
QUESTIONS = ["what are your opening hours", "goodbye"]


async def _call(livekit, reply_delay_s: float):
    region = livekit["us-east"]
    room = f"caller-test-{uuid.uuid4().hex[:8]}"
    agent_token = mint_token(region.api_key, region.api_secret, room=room, identity=f"agent-{room}")
    caller_token = mint_token(region.api_key, region.api_secret, room=room, identity=f"caller-{room}")
    async with RoomAgent(region.url, agent_token, greeting=GREETING, replies=list(ANSWERS),
                         heard_texts=list(QUESTIONS), reply_delay_s=reply_delay_s) as agent:
        async with Caller(region.url, caller_token) as caller:
            conversation = await converse(caller, [Line(text=q) for q in QUESTIONS], answer_timeout=15)
            await collect_late_transcripts(caller, conversation, linger_s=0.5)
            first = conversation.turns[0]
            return conversation, agent, caller.agent_audio(first.reply_start - 0.1, first.reply_end + 0.1)


@pytest.mark.world
async def test_ttfa_follows_the_agents_reply_delay_and_transcripts_land_on_their_side(livekit):
    quick, quick_agent, _ = await _call(livekit, reply_delay_s=0.2)
    slow, slow_agent, recorded = await _call(livekit, reply_delay_s=1.0)

    for conversation in (quick, slow):
        assert conversation.greeting_heard and conversation.greeting_text == GREETING
        assert [t.agent_text for t in conversation.turns] == ANSWERS
        assert [t.caller_text for t in conversation.turns] == QUESTIONS
        assert all(t.ttfa_s is not None for t in conversation.turns)
    # Both participants share this process's clock, so the caller's figures can be checked against what the
    # agent really did: it answered its delay after hearing the caller stop, and the caller heard the answer
    # one transport hop after it went out (bounds wide enough for a busy 2-core machine).
    for conversation, agent, delay in ((quick, quick_agent, 0.2), (slow, slow_agent, 1.0)):
        for turn, heard_end, sent in zip(conversation.turns, agent.speech_ends, agent.reply_starts[1:]):
            assert turn.ttfa_s > delay, turn  # below the delay would mean we timed from the wrong moment
            assert 0.0 < heard_end - turn.voice_ended < 2.0
            assert 0.0 < turn.reply_start - sent < 2.0
    # The same agent 0.8 s slower is heard later by about that much (scheduling jitter aside).
    difference = sum(t.ttfa_s for t in slow.turns) / 2 - sum(t.ttfa_s for t in quick.turns) / 2
    assert difference > 0.4, difference

    summary = slow.summary()
    assert summary["answered"] == summary["asked"] == 2 and summary["ttfaP50Ms"] >= 1000

    # The recorded answer is the agent's voice saying it: recognise it as a caller's ear would.
    recogniser = Recogniser([GREETING, *ANSWERS])
    heard = await asyncio.to_thread(recogniser.recognise, recorded)
    assert "we are open every day" in heard, heard


@pytest.mark.world
async def test_an_agent_that_never_joins_is_reported_not_waited_for_forever(livekit):
    region = livekit["us-east"]
    room = f"empty-{uuid.uuid4().hex[:8]}"
    async with Caller(region.url, mint_token(region.api_key, region.api_secret, room=room, identity="lonely")) as c:
        with pytest.raises(TimeoutError, match="no agent joined the room within 2 s"):
            await converse(c, [Line(text="hello")], join_timeout=2)
