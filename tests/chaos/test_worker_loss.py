"""A lost worker with no spare: the gateway keeps looking until the agent's recovery deadline, and a caller in the
room judges what it hears (tests.chaos.gap_meter).

Every real part: the operator runs real `voxfleet worker` processes (the pod runner restarts a killed one, as a
kubelet would), the gateway recovers calls, livekit-servers carry the audio. Each agent here has one worker per
region (minWorkers = maxWorkers = 1, spareCapacity BufferOnly), so the only spare a call can find is the killed
pod once it has restarted, or a worker of another region.

- a single-worker pool: the killed worker's call is taken back by the restarted worker (outcome
  restarted_worker), which says the recovery line;
- us-east's only worker killed while eu-west has one: the eu-west worker joins the same room on us-east's
  LiveKit (outcome other_region), says the recovery line and answers the caller's next question;
- no worker anywhere within a short deadline: outcome gave_up, and the caller's room is closed (not left silent).

Each prints its gap (kill -> first agent audio heard), the pod that answered and the gateway's outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest
from livekit import api as lk_api
from livekit import rtc
from prometheus_client.parser import text_string_to_metric_families

from tests.callers.caller_bot import CallerBot, Recogniser
from tests.chaos.gap_meter import GapMeter
from tests.chaos.worker_kills import kill_worker
from tests.gateway import real_worker_platform

pytestmark = [pytest.mark.world, pytest.mark.realtime, pytest.mark.timeout(480)]

GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
RECOVERY = "Sorry, we were cut off. I am back. How can I help?"
RECOVERY_LINE_S = 4.0  # the recovery line lasts ~3.4 s
# Agents of this module: name -> (regions, recovery deadline). A restarted worker is back in a few seconds on an
# idle machine (1 s restart back-off, the worker's start, its readiness probe) and much later on a loaded one:
# the single-worker pool gets the longest deadline (a restart took 36-76 s while seven test runs shared two
# cores); the benchmark judges the default 15 s.
AGENTS = {
    "solo": (["us-east"], 120000),
    "twin": (["us-east", "eu-west"], 15000),
    "lonely": (["us-east"], 1000),
}


def agent_spec(regions: list[str], deadline_ms: int) -> dict:
    return {
        "greeting": GREETING,
        "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                     "tts": {"provider": "espeak", "voice": "en-us"}},
        "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
        "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS}],
        "regions": [{"name": region, "minWorkers": 1, "maxWorkers": 1} for region in regions],
        "scaling": {"sessionsPerWorker": 4, "bufferSessions": 1, "spareCapacity": "BufferOnly"},
        "recovery": {"deadlineMs": deadline_ms},
        "limits": {"maxSessionSeconds": 300, "idleTimeoutSeconds": 120},
    }


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    with real_worker_platform.platform_namespace(kube, "vfchaos") as name:
        yield name


@pytest.fixture(scope="module")
def stack(kube, platform_namespace, livekit, world, tmp_path_factory):
    """A gateway (us-east on a LiveKit of its own that sends it webhooks, eu-west on the world's) and an operator
    running real workers."""
    logs = tmp_path_factory.mktemp("chaos-logs")
    with real_worker_platform.gateway_and_operator(kube, platform_namespace, livekit, world, logs) as (
            gateway, lk, fleet):
        yield gateway, lk, fleet, logs


@pytest.fixture(scope="module")
def tenant(kube, stack, platform_namespace):
    _, _, fleet, _ = stack
    return real_worker_platform.tenant_with_key(kube, fleet, platform_namespace, "chaos",
                                                allowedRegions=["us-east", "eu-west"])


@pytest.fixture(scope="module")
def agents(stack, tenant):
    """All of the module's agents at once (their workers start side by side), each with one Ready worker per
    region."""
    _, _, fleet, _ = stack
    _, namespace, _ = tenant
    for name, (regions, deadline_ms) in AGENTS.items():
        fleet.create_agent(namespace, name, agent_spec(regions, deadline_ms))
    deadline = time.monotonic() + 240
    for name, (regions, _) in AGENTS.items():
        for region in regions:
            while not fleet.ready_pods(namespace, name, region):
                assert time.monotonic() < deadline, f"agent {name} has no Ready worker in {region}"
                time.sleep(0.5)
    return AGENTS


@pytest.fixture(scope="module")
def recogniser():
    return Recogniser([GREETING, HOURS, RECOVERY])


async def start_session(gateway, headers, agent: str) -> dict:
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + 60  # the gateway sees the worker Ready a moment after the apiserver does
        while (response := await http.post(f"/v1/agents/{agent}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.5)
    assert response.status_code == 201, response.text
    return response.json()


def recovery_outcomes(gateway, agent: str) -> dict[str, float]:
    """voxfleet_gateway_session_recoveries_total of one agent, by outcome."""
    outcomes: dict[str, float] = {}
    for family in text_string_to_metric_families(gateway.metrics()):
        if family.name != "voxfleet_gateway_session_recoveries":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("agent") == agent:
                outcomes[sample.labels["outcome"]] = outcomes.get(sample.labels["outcome"], 0) + sample.value
    return outcomes


async def wait_for_outcome(gateway, agent: str, outcome: str, timeout: float = 30) -> dict[str, float]:
    """The agent's outcome counts once ``outcome`` is among them (then a moment more, for any that follow)."""
    deadline = time.monotonic() + timeout
    while outcome not in (outcomes := await asyncio.to_thread(recovery_outcomes, gateway, agent)):
        assert time.monotonic() < deadline, f"no {outcome} for {agent} within {timeout:.0f} s: {outcomes}"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    return await asyncio.to_thread(recovery_outcomes, gateway, agent)


def recovery_log(gateway, agent: str) -> dict:
    """The gateway's one structured line for the agent's recovery (the last, if there were several)."""
    for line in reversed(gateway.log().splitlines()):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("event") == "session recovery" and entry.get("agent") == agent:
                return entry
    return {}


async def hear(caller: CallerBot, at: float, seconds: float) -> bytes:
    """The agent audio of ``seconds`` from ``at`` (waiting until it has been heard)."""
    while time.monotonic() < at + seconds:
        await asyncio.sleep(0.05)
    return caller.agent_audio(at - 0.05, at + seconds)


def judge_line(recogniser: Recogniser, pcm: bytes, phrase: str, logs, what: str, *, min_share: float) -> None:
    # Half of the line's words, in order: PocketSphinx on eSpeak's voice loses some words even on clean audio,
    # and a loaded machine drops frames; the greeting or another line would not pass this.
    if not recogniser.contains(pcm, phrase, min_share=min_share):
        (logs / f"{what}.pcm").write_bytes(pcm)  # 16 kHz mono int16, for a listen
        raise AssertionError(f"{what}: heard {recogniser.recognise(pcm)!r} (pcm in {logs})")


async def test_a_single_worker_pool_gets_its_call_back_from_the_restarted_worker(stack, tenant, agents,
                                                                                 recogniser):
    gateway, _, fleet, logs = stack
    _, namespace, headers = tenant
    deadline_s = agents["solo"][1] / 1000
    session = await start_session(gateway, headers, "solo")
    async with CallerBot(session["livekitUrl"], session["token"]) as caller, GapMeter(caller) as meter:
        await caller.wait_for_agent_speech(timeout=30)
        pod = meter.serving_pod()
        assert pod is not None and [p.metadata.name for p in fleet.pool_pods(namespace, "solo")] == [pod]
        await asyncio.sleep(1.0)  # mid-call, not mid-greeting: the agent is silent when its process dies
        killed_at = kill_worker(pod)
        # The same identity comes back (same session nonce, same pod): the killed process sends nothing more, and
        # it was silent, so the first audio after the kill is the restarted worker's.
        gap = await meter.gap_after(killed_at, timeout=deadline_s + 20)
        judge_line(recogniser, await hear(caller, gap.heard_at, RECOVERY_LINE_S), RECOVERY, logs, "solo-recovery",
                   min_share=0.5)
    outcomes = await wait_for_outcome(gateway, "solo", "restarted_worker")
    entry = recovery_log(gateway, "solo")
    restarts = fleet.pool_pods(namespace, "solo")[0].status.container_statuses[0].restart_count
    print(f"single-worker pool, its worker killed: {gap.describe()}; outcome {outcomes}; gateway: dispatched"
          f" {entry.get('ms')} ms after the loss was seen ({entry.get('looks')} looks); pod restarts {restarts}"
          f" (deadline {deadline_s:.0f} s)")
    assert gap.pod == pod and restarts >= 1
    assert outcomes == {"restarted_worker": 1}
    assert gap.since_fault < deadline_s + 10  # dispatched within the deadline; joining and speaking take more


async def test_us_east_loses_its_only_worker_and_an_eu_west_worker_joins_the_same_room(stack, tenant, agents,
                                                                                       recogniser):
    gateway, lk, fleet, logs = stack
    _, namespace, headers = tenant
    deadline_s = agents["twin"][1] / 1000
    session = await start_session(gateway, headers, "twin")
    assert session["region"] == "us-east" and session["livekitUrl"] == lk.url
    eu_west = [p.metadata.name for p in fleet.ready_pods(namespace, "twin", "eu-west")]
    async with CallerBot(session["livekitUrl"], session["token"]) as caller, GapMeter(caller) as meter:
        await caller.wait_for_agent_speech(timeout=30)
        pod = meter.serving_pod()
        assert pod is not None and pod not in eu_west
        await asyncio.sleep(1.0)
        killed_at = kill_worker(pod)
        gap = await meter.gap_after(killed_at, timeout=deadline_s + 20, not_from_pod=pod)
        judge_line(recogniser, await hear(caller, gap.heard_at, RECOVERY_LINE_S), RECOVERY, logs, "twin-recovery",
                   min_share=0.5)
        # The eu-west agent hears the caller, too. Asked at most twice, as a person would when not understood: on
        # a machine loaded past its cores PocketSphinx may get too few frames of the first question.
        for asked in (1, 2):
            await asyncio.sleep(1.0)
            spoken = await caller.say("what are your opening hours")
            with contextlib.suppress(TimeoutError):
                answer = await meter.gap_after(spoken.voice_ended, timeout=15)
                break
        else:
            raise AssertionError("the eu-west agent answered neither question")
        judge_line(recogniser, await hear(caller, answer.heard_at, 5.0), HOURS, logs, "twin-answer", min_share=0.6)
    outcomes = await wait_for_outcome(gateway, "twin", "other_region")
    entry = recovery_log(gateway, "twin")
    print(f"us-east's only worker killed: {gap.describe()} (eu-west: {eu_west}); outcome {outcomes}; gateway:"
          f" dispatched {entry.get('ms')} ms after the loss was seen; the caller's next question answered by"
          f" {answer.pod} after {answer.since_fault * 1000:.0f} ms (asked {asked}x)")
    assert gap.pod in eu_west and answer.pod == gap.pod
    assert outcomes == {"other_region": 1} and entry.get("worker_region") == "eu-west"
    assert gap.since_fault < deadline_s


async def test_with_no_worker_within_the_deadline_the_gateway_gives_up_and_closes_the_room(stack, tenant, agents):
    gateway, lk, fleet, _ = stack
    _, namespace, headers = tenant
    deadline_s = agents["lonely"][1] / 1000
    session = await start_session(gateway, headers, "lonely")
    async with CallerBot(session["livekitUrl"], session["token"]) as caller, GapMeter(caller) as meter:
        await caller.wait_for_agent_speech(timeout=30)
        pod = meter.serving_pod()
        assert pod is not None
        await asyncio.sleep(0.5)
        killed_at = kill_worker(pod)
        limit = time.monotonic() + deadline_s + 30
        while caller.room.connection_state != rtc.ConnectionState.CONN_DISCONNECTED:
            assert time.monotonic() < limit, "the caller's room was not closed after the gateway gave up"
            await asyncio.sleep(0.05)
        closed_after = time.monotonic() - killed_at
        heard = meter.first_audio_after(killed_at)
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        rooms = (await server.room.list_rooms(lk_api.ListRoomsRequest(names=[session["room"]]))).rooms
    outcomes = await wait_for_outcome(gateway, "lonely", "gave_up")
    entry = recovery_log(gateway, "lonely")
    print(f"no worker within {deadline_s * 1000:.0f} ms: outcome {outcomes} after {entry.get('looks')} looks,"
          f" {entry.get('ms')} ms after the loss was seen; the caller's room closed"
          f" {closed_after * 1000:.0f} ms after the kill")
    assert outcomes == {"gave_up": 1} and heard is None and not rooms
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        seen = await http.get(f"/v1/sessions/{session['sessionId']}")
    assert seen.status_code == 404 or seen.json().get("phase") == "ended", seen.text
