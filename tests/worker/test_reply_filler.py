"""No dead air from a slow model, as the caller hears it: a real worker in a LiveKit room, its LLM the
OpenAI-compatible fake with a set time to first token (STT and TTS: the Deepgram and Cartesia fakes, whose
TTS is real eSpeak speech).

With the model 3 s late the caller hears `replyFiller.say` once, then the answer; with a fast model the answer
alone. Both recognised in the room's audio; when each was heard is printed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.callers.caller_bot import CallerBot, Recogniser, mint_token
from tests.fakes.openai_server import Script
from tests.fakes.providers import start_fake_providers
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(240)]

GREETING = "Hello, how can I help?"
FILLER = "Just a moment please."
ANSWER = "Your order shipped yesterday."
AFTER_MS = 1000
SLOW_TTFT_MS = 3500
LOADED_S = 30.0  # a loaded 2-core machine: an answer has taken many seconds


@pytest.fixture(scope="module")
def stage(livekit, tmp_path_factory):
    region = livekit["us-east"]
    fakes = start_fake_providers(script=Script(reply=ANSWER), transcripts=["where is my order"])
    worker = None
    try:
        spec = offline_spec(greeting=GREETING, pipeline=fakes.pipeline_spec(), intents=[],
                            replyFiller={"afterMs": AFTER_MS, "say": FILLER})
        worker = WorkerUnderTest.start(tmp_path_factory.mktemp("reply-filler"), spec, livekit=region,
                                       env=fakes.secret_env(), wait_ready=120)
        yield region, fakes, worker
    finally:
        if worker is not None:
            worker.stop()
        fakes.stop()


async def _ask(region, worker: WorkerUnderTest):
    room = f"room-{uuid.uuid4().hex[:10]}"
    assert worker.dispatch(room=room).status_code == 201
    caller = CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))
    await caller.__aenter__()
    await caller.wait_for_agent_speech(timeout=LOADED_S)
    return caller, await caller.say("where is my order")


async def test_a_slow_model_gets_the_filler_then_the_answer(stage) -> None:
    region, fakes, worker = stage
    fakes.openai.ttft_ms = SLOW_TTFT_MS
    caller, asked = await _ask(region, worker)
    try:
        filler = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=LOADED_S, silence_s=0.4)
        answer = await caller.wait_for_agent_speech(after=filler.end + 0.05, timeout=LOADED_S)
        await asyncio.sleep(AFTER_MS / 1000 + 0.5)
        later = caller.voiced_frames(answer.end + 0.2)  # a second filler after the answer would land here
    finally:
        await caller.__aexit__(None, None, None)
    filler_at, answer_at = filler.start - asked.voice_ended, answer.start - asked.voice_ended
    print(f"caller's voice ended -> filler heard {filler_at * 1000:.0f} ms (afterMs {AFTER_MS}, counted from the"
          f" turn's end), answer heard {answer_at * 1000:.0f} ms (model's first token {SLOW_TTFT_MS} ms)")
    recogniser = Recogniser([FILLER, ANSWER])
    assert recogniser.contains(filler.pcm, FILLER), recogniser.recognise(filler.pcm)
    assert recogniser.contains(answer.pcm, ANSWER), recogniser.recognise(answer.pcm)
    assert AFTER_MS / 1000 <= filler_at < SLOW_TTFT_MS / 1000  # not early, and it filled the model's silence
    assert answer_at >= SLOW_TTFT_MS / 1000  # the answer came from the slow model, after the filler
    assert later == [], f"agent audio after the answer: {len(later)} frames"


async def test_a_fast_model_gets_no_filler(stage) -> None:
    region, fakes, worker = stage
    fakes.openai.ttft_ms = 0
    caller, asked = await _ask(region, worker)
    try:
        answer = await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=LOADED_S)
        await asyncio.sleep(AFTER_MS / 1000 + 0.5)  # past the bound: a filler would have been said by now
        heard = caller.agent_audio(since=asked.voice_ended)
        later = caller.voiced_frames(answer.end + 0.2)
    finally:
        await caller.__aexit__(None, None, None)
    print(f"caller's voice ended -> answer heard {(answer.start - asked.voice_ended) * 1000:.0f} ms, no filler")
    recogniser = Recogniser([FILLER, ANSWER])
    assert recogniser.contains(answer.pcm, ANSWER), recogniser.recognise(answer.pcm)
    assert not recogniser.contains(heard, FILLER, min_share=0.5), recogniser.recognise(heard)
    assert later == [], f"agent audio after the answer: {len(later)} frames"
