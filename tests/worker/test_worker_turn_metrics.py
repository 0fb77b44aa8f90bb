"""Turn outcomes measured in production, proven on a real call: a real `voxfleet worker` in a real livekit-server
room and a caller that asks, repeats itself, asks something new and hangs up in the middle of the answer. The
worker's /metrics must then count one turn `repeated`, one `answered` and one `hung_up`
(docs/operations.md, Turn success; the definitions case by case are tests/worker/test_turn_outcomes.py)."""

from __future__ import annotations

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
    spec = offline_spec(intents=[{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS},
                                 {"name": "story", "keywords": ["story"], "reply": STORY}])
    worker = WorkerUnderTest.start(tmp_path, spec, livekit=region)
    try:
        before = turn_outcomes(worker)
        assert before == {"answered": 0, "repeated": 0, "hung_up": 0, "unanswered": 0}  # created at start
        room = f"room-{uuid.uuid4().hex[:10]}"
        session_id = worker.dispatch(room=room).json()["session"]["sessionId"]
        caller = CallerBot(region.url, mint_token(region, room=room, identity=f"caller-{uuid.uuid4().hex[:6]}"))
        async with caller:
            await caller.wait_for_agent_speech(timeout=20)
            for _ in range(2):  # the same question twice: the first turn is a repeat's
                asked = await caller.say("opening hours")
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
    finally:
        worker.stop()
    counted = {outcome: after[outcome] - before[outcome] for outcome in after}
    print(f"turn outcomes of one call (ask, repeat, new question, hang up mid-answer): {counted};"
          f" end reason {state['endReason']}")
    assert state["endReason"] == "caller-left"
    assert counted == {"answered": 1, "repeated": 1, "hung_up": 1, "unanswered": 0}, worker.log_tail()
