"""Turn outcomes and false interruptions measured in production, proven on a real call: a real `voxfleet worker`
in a real livekit-server room and a caller that asks, says "hmm" over the answer (a barge-in without words),
asks again, asks something new and hangs up in the middle of that answer. The worker's /metrics must then count
one turn `repeated`, one `answered`, one `hung_up`, and exactly one barge-in, a false one (docs/operations.md,
Turn success and False interruptions; the definitions case by case are tests/worker/test_turn_outcomes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.callers.caller_bot import CallerBot, mint_token
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

HOURS = "We are open every day from nine in the morning to six in the evening."
STORY = ("Once upon a time there was a small town by the sea where every morning the people walked "
         "down to the water to watch the boats come home with the fish of the night.")


def counter(worker: WorkerUnderTest, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(worker.metrics()) if family.name == name
               for sample in family.samples if sample.name == f"{name}_total")


def turn_outcomes(worker: WorkerUnderTest) -> dict[str, float]:
    outcomes: dict[str, float] = {}
    for family in text_string_to_metric_families(worker.metrics()):
        if family.name == "voxfleet_worker_turn_outcomes":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    outcomes[sample.labels["outcome"]] = sample.value
    return outcomes


async def test_turn_outcomes_of_a_real_call(livekit, tmp_path):
    region = livekit["us-east"]
    spec = offline_spec(
        intents=[{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS},
                 {"name": "story", "keywords": ["story"], "reply": STORY}],
        # barge-in as in tests/worker/test_worker_calls.py: voice confirmed in one 32 ms window
        turnDetection={"detector": "speech-timeout",
                       "vad": {"stopMs": 200, "startMs": 32, "minVolumePercent": 30, "confidencePercent": 60},
                       "timeouts": {"speechTimeoutMs": 300}})
    worker = WorkerUnderTest.start(tmp_path, spec, livekit=region)
    try:
        before = turn_outcomes(worker)
        assert before == {"answered": 0, "repeated": 0, "hung_up": 0, "unanswered": 0}  # created at start
        room = f"room-{uuid.uuid4().hex[:10]}"
        session_id = worker.dispatch(room=room).json()["session"]["sessionId"]
        caller = CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))
        async with caller:
            await caller.wait_for_agent_speech(timeout=20)
            asked = await caller.say("opening hours")
            answer = await caller.heard.wait_for(lambda: (caller.voiced_frames(asked.voice_ended) or [None])[0],
                                                 timeout=10, what="the answer")
            await asyncio.sleep(max(0.0, answer + 1.0 - time.monotonic()))
            await caller.say("hmm")  # over the answer: the agent stops, and no word is transcribed
            deadline = time.monotonic() + 10  # the wordless turn ends at Pipecat's 5 s turn-stop timeout
            while counter(worker, "voxfleet_worker_false_interruptions") < 1:
                assert time.monotonic() < deadline, worker.log_tail()
                await asyncio.sleep(0.1)
            turn_ended = time.monotonic() - 0.15  # polled every 0.1 s; the agent cannot speak before it ended
            with contextlib.suppress(TimeoutError):  # the agent takes the answer up again: let it finish
                await caller.wait_for_agent_speech(after=turn_ended, timeout=10)
            asked = await caller.say("opening hours")  # the first turn's repeat
            await caller.wait_for_agent_speech(after=asked.voice_ended, timeout=10)
            asked = await caller.say("tell me a story")
            await caller.heard.wait_for(lambda: (caller.voiced_frames(asked.voice_ended) or [None])[0],
                                        timeout=10, what="the story")
            # leaving here hangs up in the middle of the story
        deadline = time.monotonic() + 40
        while worker.get(f"/v1/sessions/{session_id}").json()["phase"] != "ended":
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        state = worker.get(f"/v1/sessions/{session_id}").json()
        after = turn_outcomes(worker)
        barge_ins = counter(worker, "voxfleet_worker_interruptions")
        false_ones = counter(worker, "voxfleet_worker_false_interruptions")
    finally:
        worker.stop()
    counted = {outcome: after[outcome] - before[outcome] for outcome in after}
    print(f"one call (ask, 'hmm' over the answer, ask again, new question, hang up mid-answer): turn outcomes"
          f" {counted}, barge-ins {barge_ins:g} of which false {false_ones:g}; end reason {state['endReason']}")
    assert state["endReason"] == "caller-left"
    assert counted == {"answered": 1, "repeated": 1, "hung_up": 1, "unanswered": 0}, worker.log_tail()
    assert (barge_ins, false_ones) == (1, 1)  # one barge-in, counted once (Pipecat sends its frame both ways)
