"""A real `voxfleet worker` process serving calls in a real livekit-server room, judged by a caller bot.

What the agent says is checked by recognising the audio the caller recorded in the room; timings are what the
caller hears. The worker is started once per module (warm start ~2 s) with two slots and reused; each test
leaves its rooms, and waits for the slots to be free before it starts.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx
import pytest
from livekit import api as lk_api

from tests.callers.caller_bot import (
    CALLER_GONE_S,
    CallerBot,
    Recogniser,
    measure_two_legs,
    median,
    mint_token,
)
from tests.worker.worker_harness import WorkerUnderTest, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
STORY = ("Once upon a time there was a small town by the sea where every morning the people walked "
         "down to the water to watch the boats come home with the fish of the night.")
STOPPED = "Okay, I will stop."
RECOVERY = "Sorry, we were cut off. I am back. How can I help?"
PHRASES = [GREETING, HOURS, STORY, STOPPED, RECOVERY]


def spec() -> dict:
    return offline_spec(
        intents=[
            {"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS},
            {"name": "story", "keywords": ["story"], "reply": STORY},
            {"name": "stop", "keywords": ["stop", "no stop"], "reply": STOPPED},
            {"name": "crash-on-purpose", "keywords": ["explode"], "reply": "never said"},
            {"name": "hang-on-cancel", "keywords": ["freeze"], "reply": HOURS},
        ],
        # A snappy barge-in agent: voice is confirmed in one 32 ms window, and a lower volume floor (the
        # smoothed volume needs ~5 windows to pass 0.6) keeps barge-in inside the 300 ms a caller tolerates.
        turnDetection={"detector": "speech-timeout", "vad": {"stopMs": 200, "startMs": 32, "minVolumePercent": 30, "confidencePercent": 60},
                       "timeouts": {"speechTimeoutMs": 300}},
        scaling={"sessionsPerWorker": 2})


@pytest.fixture(scope="module")
def region(livekit):
    return livekit["us-east"]


@pytest.fixture(scope="module")
def worker(region, tmp_path_factory):
    process = WorkerUnderTest.start(tmp_path_factory.mktemp("worker"), spec(), livekit=region,
                                    env={"VOXFLEET_FAULT_INJECTION": "true"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser(PHRASES)


@pytest.fixture
def idle_worker(worker):
    """The module's worker with every slot free again (the previous test's sessions have ended)."""
    deadline = time.monotonic() + CALLER_GONE_S
    while worker.get("/v1/load").json()["active"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker.get("/v1/load").json()["active"] == 0, worker.log_tail()
    return worker


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:10]}"


def caller_for(region, room: str, name: str = "caller") -> CallerBot:
    return CallerBot(region.url, mint_token(region, room=room, identity=f"{name}-{uuid.uuid4().hex[:6]}"))


async def ask_for_hours(caller: CallerBot, recogniser: Recogniser, line: str = "opening hours") -> bytes:
    """Say a line whose answer is the opening hours and return the answer's audio; a caller repeats once when
    not understood."""
    pcm = b""
    for _ in range(2):
        spoken = await caller.say(line)
        pcm = (await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)).pcm
        if recogniser.contains(pcm, HOURS):
            break
    return pcm


def metric_sum(text: str, name: str) -> tuple[float, float]:
    """(sum, count) of a histogram over all label sets."""
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith(f"{name}_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


async def wait_for_state(worker, session_id: str, phase: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = worker.get(f"/v1/sessions/{session_id}").json()
        if state.get("phase") == phase:
            return state
        await asyncio.sleep(0.1)
    # Who the server still has in the room tells a caller that never left from a worker that missed it.
    async with lk_api.LiveKitAPI(worker.livekit.http_url, worker.livekit.api_key, worker.livekit.api_secret) as lk:
        listed = await lk.room.list_participants(lk_api.ListParticipantsRequest(room=state.get("room", "")))
    in_room = [participant.identity for participant in listed.participants]
    raise AssertionError(f"session {session_id} not {phase}: {state}\nin the room: {in_room}\n{worker.log_tail()}")


async def test_caller_hears_greeting_and_answer_and_worker_ttfa_agrees(idle_worker, region, recogniser):
    worker = idle_worker
    room = new_room()
    assert worker.dispatch(room=room).status_code == 201
    heard, estimated, answers = [], [], []

    # The transport's share, measured while the turns run (same load), through the same server.
    legs = asyncio.create_task(measure_two_legs(region, count=8, gap_s=0.8))
    async with caller_for(region, room) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=20)
        for _ in range(4):
            before = metric_sum(worker.metrics(), "voxfleet_worker_ttfa_seconds")
            spoken = await caller.say("opening hours")
            answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=10)
            after = metric_sum(worker.metrics(), "voxfleet_worker_ttfa_seconds")
            assert after[1] - before[1] == 1  # one answer, one TTFA estimate
            heard.append(answer.start - spoken.voice_ended)
            estimated.append(after[0] - before[0])
            answers.append(answer.pcm)
    two_legs = median(await legs)
    assert 0 < two_legs < 1.0
    assert recogniser.contains(greeting.pcm, GREETING), recogniser.recognise(greeting.pcm)
    understood = [pcm for pcm in answers if recogniser.contains(pcm, HOURS)]
    assert len(understood) >= 3, [recogniser.recognise(pcm) for pcm in answers]
    # The worker's estimate leaves out the two network legs; the measured leg, twice, puts them back. The median
    # over turns keeps one scheduling hiccup on a shared 2-core machine from deciding.
    errors = [abs(h - two_legs - e) for h, e in zip(heard, estimated)]
    print(f"heard {[round(h, 3) for h in heard]} two legs {two_legs:.3f} worker {[round(e, 3) for e in estimated]}"
          f" -> |error| median {median(errors) * 1000:.0f} ms")
    assert median(errors) <= 0.05, (heard, two_legs, estimated)


async def test_full_worker_refuses_one_more_and_repeats_are_the_same_session(idle_worker, region, recogniser):
    worker = idle_worker
    rooms = [new_room(), new_room()]
    bodies = [worker.dispatch_body(room=room) for room in rooms]
    for body in bodies:
        response = httpx.post(f"{worker.url}/v1/dispatch", json=body, headers=worker.headers, timeout=10)
        assert response.status_code == 201, response.text
    again = httpx.post(f"{worker.url}/v1/dispatch", json=bodies[0], headers=worker.headers, timeout=10)
    assert again.status_code == 201 and again.json()["session"]["sessionId"] == bodies[0]["sessionId"]
    assert again.json()["load"]["active"] == 2 and again.json()["load"]["free"] == 0
    full = worker.dispatch(room=new_room())
    assert full.status_code == 409 and full.json()["code"] == "worker_full"

    async def call(room: str) -> bytes:
        async with caller_for(region, room) as caller:
            await caller.wait_for_agent_speech(timeout=20)
            return await ask_for_hours(caller, recogniser)

    answers = await asyncio.gather(*(call(room) for room in rooms))
    for pcm in answers:
        assert recogniser.contains(pcm, HOURS), recogniser.recognise(pcm)
    for body in bodies:
        state = await wait_for_state(worker, body["sessionId"], "ended", timeout=CALLER_GONE_S)
        assert state["endReason"] == "caller-left"


async def test_a_crashing_session_ends_alone(idle_worker, region, recogniser):
    worker = idle_worker
    doomed, healthy = new_room(), new_room()
    doomed_id = worker.dispatch(room=doomed).json()["session"]["sessionId"]
    healthy_id = worker.dispatch(room=healthy).json()["session"]["sessionId"]
    async with caller_for(region, doomed, "doomed") as victim, caller_for(region, healthy, "healthy") as caller:
        await asyncio.gather(victim.wait_for_agent_speech(timeout=20), caller.wait_for_agent_speech(timeout=20))
        await victim.say("explode")
        state = await wait_for_state(worker, doomed_id, "ended")
        assert state["endReason"] == "error"
        assert worker.get("/v1/load").json()["active"] == 1  # its slot is free again
        answer = await ask_for_hours(caller, recogniser)
        assert recogniser.contains(answer, HOURS), recogniser.recognise(answer)
        assert worker.get(f"/v1/sessions/{healthy_id}").json()["phase"] == "active"


async def test_a_pipeline_stuck_at_hang_up_still_ends_and_frees_its_slot(idle_worker, region, recogniser):
    # A provider client stuck closing its connection holds the CancelFrame; the call must still end promptly.
    worker = idle_worker
    room = new_room()
    session_id = worker.dispatch(room=room).json()["session"]["sessionId"]
    async with caller_for(region, room) as caller:
        await caller.wait_for_agent_speech(timeout=20)
        pcm = await ask_for_hours(caller, recogniser, "freeze")  # the hang-on-cancel intent answers with the hours
        assert recogniser.contains(pcm, HOURS), recogniser.recognise(pcm)
        asked = time.monotonic()
        assert worker.delete(f"/v1/sessions/{session_id}").status_code in (200, 202)
        state = await wait_for_state(worker, session_id, "ended")
        ended_after = time.monotonic() - asked
    print(f"stuck teardown: session ended {ended_after:.2f} s after it was asked to")
    assert state["endReason"] == "deleted"
    assert ended_after < 8.0, ended_after
    assert worker.get("/v1/load").json()["active"] == 0


async def test_barge_in_stops_the_agent_within_300_ms_as_heard(idle_worker, region, recogniser):
    worker = idle_worker
    room = new_room()
    worker.dispatch(room=room)
    delays, replies = [], []
    async with caller_for(region, room) as caller:
        await caller.wait_for_agent_speech(timeout=20)
        for _ in range(3):  # three barge-ins: the median is the figure, so one scheduling hiccup is not the verdict
            asked = await caller.say("story")
            story_started = await caller.heard.wait_for(
                lambda: (caller.voiced_frames(asked.voice_ended) or [None])[0], timeout=10, what="the answer")
            await asyncio.sleep(max(0.0, story_started + 1.2 - time.monotonic()))
            interruption = await caller.say("no stop")
            # From the caller's first voiced audio to the agent's last audio heard.
            stopped = await caller.wait_for_agent_silence(after=interruption.voice_started, silence_s=0.15, timeout=5)
            delays.append(stopped - interruption.voice_started)
            replies.append((await caller.wait_for_agent_speech(after=interruption.voice_ended, timeout=10)).pcm)
    print(f"barge-in: agent audio heard stopping {[round(d, 3) for d in delays]} s after the caller began")
    assert median(delays) <= 0.3 and max(delays) <= 0.5, delays
    assert any(recogniser.contains(pcm, STOPPED) for pcm in replies), [recogniser.recognise(p) for p in replies]


async def test_recovered_session_says_the_recovery_line_and_delete_ends_it(idle_worker, region, recogniser):
    worker = idle_worker
    room = new_room()
    session_id = worker.dispatch(room=room, recovery=True).json()["session"]["sessionId"]
    async with caller_for(region, room) as caller:
        line = await caller.wait_for_agent_speech(timeout=20)
        assert recogniser.contains(line.pcm, RECOVERY), recogniser.recognise(line.pcm)
        deleted = worker.delete(f"/v1/sessions/{session_id}")
        assert deleted.status_code in (200, 202)
        state = await wait_for_state(worker, session_id, "ended")
        assert state["endReason"] == "deleted"
        deadline = time.monotonic() + 10
        while caller.room.remote_participants and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not caller.room.remote_participants  # the agent left the room


def test_control_api_requires_the_worker_token(worker):
    body = worker.dispatch_body(room=new_room())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {worker.headers['Authorization']}"}):
        response = httpx.post(f"{worker.url}/v1/dispatch", json=body, headers=headers, timeout=5)
        assert response.status_code == 401 and response.json()["code"] == "unauthorized"
        assert httpx.get(f"{worker.url}/v1/load", headers=headers, timeout=5).status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{worker.url}{path}", timeout=5).status_code == 200
    bad = httpx.post(f"{worker.url}/v1/dispatch", json={**body, "sessionId": "x"}, headers=worker.headers, timeout=5)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    assert body["livekitToken"] not in bad.text  # errors never echo the token
    missing = worker.get("/v1/sessions/sess-does-not-exist")
    assert missing.status_code == 404 and missing.json()["code"] == "session_not_found"
    assert re.search(r"voxfleet_worker_ready\{.*\} 1\.0", worker.metrics())


async def test_sigterm_drains_a_live_call_then_exits_zero(region, tmp_path, recogniser):
    worker = WorkerUnderTest.start(tmp_path, spec(), livekit=region)
    try:
        room = new_room()
        session_id = worker.dispatch(room=room).json()["session"]["sessionId"]
        async with caller_for(region, room) as caller:
            await caller.wait_for_agent_speech(timeout=20)
            worker.terminate()
            deadline = time.monotonic() + 5
            while httpx.get(f"{worker.url}/readyz", timeout=2).status_code != 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert httpx.get(f"{worker.url}/readyz", timeout=2).json()["code"] == "draining"
            refused = worker.dispatch(room=new_room())
            assert refused.status_code == 409 and refused.json()["code"] == "draining"
            assert worker.get("/v1/load").json()["draining"] is True
            answer = await ask_for_hours(caller, recogniser)
            assert recogniser.contains(answer, HOURS), recogniser.recognise(answer)
            assert worker.process.poll() is None  # still serving the live call
            assert worker.get(f"/v1/sessions/{session_id}").json()["phase"] == "active"
        assert worker.wait(20) == 0, worker.log_tail()
    finally:
        worker.stop()


async def test_sessions_end_on_idle_and_on_max_duration_and_free_their_slots(region, tmp_path, recogniser):
    limits = {"maxSessionSeconds": 10, "idleTimeoutSeconds": 5}
    worker = WorkerUnderTest.start(tmp_path, {**spec(), "limits": limits}, livekit=region)
    try:
        quiet_room, chatty_room = new_room(), new_room()
        quiet_id = worker.dispatch(room=quiet_room).json()["session"]["sessionId"]
        chatty_id = worker.dispatch(room=chatty_room).json()["session"]["sessionId"]
        started = time.monotonic()
        async with caller_for(region, quiet_room, "quiet"), caller_for(region, chatty_room, "chatty") as chatty:
            await chatty.wait_for_agent_speech(timeout=20)
            while time.monotonic() - started < 25:
                idle_state = worker.get(f"/v1/sessions/{quiet_id}").json()
                chatty_state = worker.get(f"/v1/sessions/{chatty_id}").json()
                if chatty_state["phase"] == "ended":
                    break
                spoken = await chatty.say("opening hours")  # keeps this call busy past the idle timeout
                try:
                    await chatty.wait_for_agent_speech(after=spoken.voice_ended, timeout=4)
                except TimeoutError:
                    pass  # the call may just have reached its maximum duration
            assert idle_state["phase"] == "ended" and idle_state["endReason"] == "idle", idle_state
            assert chatty_state["endReason"] == "max-duration", chatty_state
            assert 10 <= time.monotonic() - started < 20
        load = worker.get("/v1/load").json()
        assert load["active"] == 0 and load["free"] == load["capacity"]
    finally:
        worker.stop()
