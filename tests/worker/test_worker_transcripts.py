"""Live transcripts in the room: with observability.recordTranscripts on, a real worker publishes both sides'
final text on lk.transcription, each naming the audio track it was heard on; with it off, nothing. Judged by a
caller in the room reading the text streams (voxfleet.devplatform.room_transcripts), as the playground does.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.callers.caller_bot import mint_token
from tests.worker.worker_harness import WorkerUnderTest, offline_spec
from voxfleet.devplatform.caller import Caller

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
LATE_S = 1.5  # transcripts trail the audio they describe


async def call_and_ask(region, worker: WorkerUnderTest) -> Caller:
    room = f"room-{uuid.uuid4().hex[:10]}"
    assert worker.dispatch(room=room).status_code == 201
    caller = Caller(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))
    await caller.join()
    try:
        await caller.wait_for_agent_speech(timeout=20)
        for _ in range(2):  # a caller repeats once when not understood
            spoken = await caller.say("opening hours")
            await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)
            await asyncio.sleep(LATE_S)
            if "open every day" in caller.transcripts.text("agent", since=spoken.started):
                break
    finally:
        await caller.leave()
    return caller


@pytest.mark.parametrize("record", [True, False], ids=["recordTranscripts-on", "recordTranscripts-off"])
async def test_worker_publishes_both_sides_transcripts_only_when_recording(livekit, tmp_path, record):
    region = livekit["us-east"]
    worker = WorkerUnderTest.start(tmp_path, offline_spec(observability={"recordTranscripts": record}),
                                   livekit=region)
    try:
        caller = await call_and_ask(region, worker)
    finally:
        worker.stop()
    lines = caller.transcript_lines()
    if not record:
        assert lines == [], lines
        return
    agent = [line for line in lines if line.role == "agent"]
    said = [line for line in lines if line.role == "caller"]
    assert agent and agent[0].text == GREETING, lines
    assert any(line.text == HOURS for line in agent), lines
    assert any("opening hours" in line.text for line in said), lines
    assert all(line.final for line in lines)
    assert len({line.segment for line in lines}) == len(lines)  # one segment per turn
    # Both were published by the agent: the transcribed track, not the sender, told the sides apart.
    assert len({line.sender for line in lines}) == 1 and lines[0].sender.startswith("agent-")
