"""End to end with every real part: the operator turns a VoiceAgent that a tenant created through the gateway
into a warm pool of real `voxfleet worker` processes (run by the pod runner at their pod IPs); the gateway
allocates sessions on them; a caller bot in the LiveKit room judges what it hears.

- A tenant creates an agent through the API, waits until it is ready, starts a session, and the caller hears
  the greeting and then the answer to its question.
- A SIP-style room (created on LiveKit with the agent's room prefix, no REST call) gets a worker that greets.
- Killing the serving worker process mid-call, again and again: the caller hears the recovery line from
  another worker; the silence gap (kill -> first sound of the recovery line) is reported as p50/p95.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

import httpx
import pytest
from livekit import api as lk_api

from tests.callers.caller_bot import CallerBot, Recogniser, mint_token
from tests.chaos.worker_kills import kill_worker
from tests.gateway import real_worker_platform

pytestmark = [pytest.mark.world, pytest.mark.timeout(600)]

AGENT = "concierge"
GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
RECOVERY = "Sorry, we were cut off. I am back. How can I help?"
KILLS = 3
SPEC = {
    "greeting": GREETING,
    "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                 "tts": {"provider": "espeak", "voice": "en-us"}},
    "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
    "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS}],
    "regions": [{"name": "us-east", "minWorkers": 3, "maxWorkers": 3}],
    "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1},
    "limits": {"maxSessionSeconds": 300, "idleTimeoutSeconds": 120},
}


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    with real_worker_platform.platform_namespace(kube, "vfe2e") as name:
        yield name


@pytest.fixture(scope="module")
def stack(kube, platform_namespace, livekit, world, tmp_path_factory):
    """Gateway (us-east on a LiveKit that sends it webhooks) and an operator running real workers."""
    logs = tmp_path_factory.mktemp("e2e-logs")
    with real_worker_platform.gateway_and_operator(kube, platform_namespace, livekit, world, logs) as (
            gateway, lk, fleet):
        yield gateway, lk, fleet, logs


@pytest.fixture(scope="module")
def tenant(kube, stack, platform_namespace):
    _, _, fleet, _ = stack
    return real_worker_platform.tenant_with_key(kube, fleet, platform_namespace, "e2e",
                                                allowedRegions=["us-east", "eu-west"])


@pytest.fixture(scope="module")
def ready_agent(stack, tenant):
    """The agent created through the gateway's API, polled there until the operator reports it Ready."""
    gateway, _, _, _ = stack
    _, _, headers = tenant
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=30) as http:
        created = http.put(f"/v1/agents/{AGENT}", json=SPEC)
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 240
        while not (view := http.get(f"/v1/agents/{AGENT}").json())["ready"]:
            assert time.monotonic() < deadline, f"agent never Ready: {view['status']}"
            time.sleep(0.5)
    assert view["status"]["regions"][0]["readyWorkers"] == 3
    return view


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser([GREETING, HOURS, RECOVERY])


async def _start_session(gateway, headers) -> dict:
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + 30
        while (response := await http.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.5)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_tenant_creates_an_agent_and_a_caller_hears_it_answer(stack, tenant, ready_agent, recogniser):
    gateway, lk, _, _ = stack
    session = await _start_session(gateway, tenant[2])
    assert session["region"] == "us-east" and session["livekitUrl"] == lk.url
    async with CallerBot(session["livekitUrl"], session["token"]) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=30)
        assert recogniser.contains(greeting.pcm, GREETING), recogniser.recognise(greeting.pcm)
        spoken = await caller.say("what are your opening hours")
        answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=20)
        assert recogniser.contains(answer.pcm, HOURS), recogniser.recognise(answer.pcm)
        print(f"TTFA as the caller heard it: {(answer.start - spoken.voice_ended) * 1000:.0f} ms")
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant[2]) as http:
        deadline = time.monotonic() + 20  # the caller left: the webhook ends the session at its worker
        while (await http.get(f"/v1/sessions/{session['sessionId']}")).json().get("phase") != "ended":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)


async def test_a_sip_style_room_gets_a_worker_that_greets(stack, tenant, ready_agent, recogniser):
    _, lk, _, _ = stack
    name = tenant[0]
    room = f"{name}.{AGENT}.sip-{uuid.uuid4().hex[:8]}"
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        await server.room.create_room(lk_api.CreateRoomRequest(name=room, empty_timeout=120))
    token = mint_token(room=room, identity="sip-caller", url=lk.url, api_key=lk.api_key, api_secret=lk.api_secret)
    async with CallerBot(lk.url, token) as caller:
        greeting = await caller.wait_for_agent_speech(timeout=30)
        assert recogniser.contains(greeting.pcm, GREETING), recogniser.recognise(greeting.pcm)


def _serving_pod(caller: CallerBot) -> str | None:
    agents = [p.identity for p in caller.room.remote_participants.values() if p.identity.startswith("vf-agent.")]
    return agents[-1].split(".", 2)[2] if agents else None


async def _heard(caller: CallerBot, *, after: float, seconds: float, timeout: float = 30.0) -> tuple[float, bytes]:
    """When the agent's next speech after ``after`` began, and the audio of its first ``seconds``: a fixed window,
    so a frame stall on a loaded machine neither cuts a line short nor glues the next one on."""
    deadline = time.monotonic() + timeout
    while not (voiced := caller.voiced_frames(since=after)):
        assert time.monotonic() < deadline, f"the caller heard nothing within {timeout:.0f} s"
        await asyncio.sleep(0.02)
    start = voiced[0]
    while time.monotonic() < start + seconds:
        await asyncio.sleep(0.05)
    return start, caller.agent_audio(start - 0.05, start + seconds)


async def test_killing_the_serving_worker_the_caller_hears_the_recovery_line(stack, tenant, ready_agent, recogniser):
    gateway, _, fleet, logs = stack
    _, namespace, headers = tenant
    session = await _start_session(gateway, headers)
    gaps = []
    async with CallerBot(session["livekitUrl"], session["token"]) as caller:
        await caller.wait_for_agent_speech(timeout=30)
        for kill in range(KILLS):
            pod = _serving_pod(caller)
            assert pod is not None
            deadline = time.monotonic() + 120  # another worker is warm (a killed one restarts and warms up)
            while not [p for p in fleet.ready_pods(namespace, AGENT) if p.metadata.name != pod]:
                assert time.monotonic() < deadline, "no other ready worker to recover to"
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # mid-call, not mid-greeting
            killed_at = kill_worker(pod)
            started, pcm = await _heard(caller, after=killed_at, seconds=4.0)  # the line lasts ~3.4 s
            gaps.append(started - killed_at)
            # Half of the line's words, in order: PocketSphinx on eSpeak's voice loses some words even on clean
            # audio, and a loaded machine drops frames; the greeting or the answer would not pass this.
            if not recogniser.contains(pcm, RECOVERY, min_share=0.5):
                (logs / f"kill-{kill}.pcm").write_bytes(pcm)  # 16 kHz mono int16, for a listen
                raise AssertionError(f"kill {kill}: heard {recogniser.recognise(pcm)!r} (pcm in {logs})")
            assert _serving_pod(caller) != pod
            await asyncio.sleep(1.0)
        spoken = await caller.say("what are your opening hours")  # the recovered agent still serves the call
        _, pcm = await _heard(caller, after=spoken.voice_ended, seconds=5.0)  # the answer lasts ~4.5 s
        if not recogniser.contains(pcm, HOURS, min_share=0.6):
            (logs / "answer.pcm").write_bytes(pcm)
            raise AssertionError(f"answer after recovery: heard {recogniser.recognise(pcm)!r} (pcm in {logs})")
    p50 = statistics.median(gaps)
    p95 = sorted(gaps)[max(0, round(0.95 * len(gaps)) - 1)]
    print(f"silence gap after killing the serving worker ({len(gaps)} kills): p50 {p50 * 1000:.0f} ms,"
          f" p95 {p95 * 1000:.0f} ms, all {[round(g * 1000) for g in gaps]} (goal p95 <= 3000 ms)")
    assert max(gaps) < 15.0
