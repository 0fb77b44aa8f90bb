"""Rolling updates cut nothing, proven under load: an agent with live calls on real workers gets a new spec.

Every real part: the operator runs real `voxfleet worker` processes (offline pipeline: PocketSphinx, a scripted
LLM, eSpeak), the gateway places the calls, callers (tests.callers.caller_bot) sit in their LiveKit rooms. The spec
edit changes the greeting and the reply to "opening hours", so which config answered is heard, not read off a log.

- every live call finishes on its old worker: its agent participant never leaves and no other agent joins before
  the caller hangs up (a "cut" is either);
- a fifth of the callers each speak once their worker was told to stop, and hear their OLD agent's answer, from
  the same participant that took the call (the others are muted: in the room, listening, sending nothing); one
  the agent asks to repeat the question says it again, as a caller would (at most half of them may need to);
- new calls land on new workers (the new config hash) and hear the new greeting;
- the old workers exit only after their last call, and then at once (the rollout's duration is printed).

Live calls: VOXFLEET_ROLLOUT_CALLS (default 20); see docs/resilience.md "Rolling updates" for what this machine
holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from dataclasses import dataclass, field

import httpx
import pytest
from livekit import rtc

from tests.callers.caller_bot import CallerBot, Recogniser
from tests.gateway import real_worker_platform
from tests.operator.fleet import Fleet
from voxfleet.api import labels, room_names
from voxfleet.api.voiceagent import NoMatch

pytestmark = [pytest.mark.world, pytest.mark.realtime, pytest.mark.timeout(900)]

AGENT = "frontdesk"
CALLS = int(os.environ.get("VOXFLEET_ROLLOUT_CALLS", "20"))
SESSIONS_PER_WORKER = 10
SPEAKERS = math.ceil(CALLS / 5)  # a fifth of the live calls are CallerBots who speak once their worker stops
NEW_CALLS = 2
OLD_GREETING = "Hello, thank you for calling. How can I help you today?"
OLD_HOURS = "We are open every day from nine in the morning to six in the evening."
NEW_GREETING = "Good evening, this is the new front desk speaking."
NEW_HOURS = "Our doors never close, we answer around the clock all week long."
RETRY_LINE = NoMatch().retry  # what either config says to words it did not understand


def agent_spec(greeting: str, hours: str) -> dict:
    workers = math.ceil(CALLS / SESSIONS_PER_WORKER) + 1  # what WorkerLoss keeps for CALLS live calls
    return {
        "greeting": greeting,
        "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                     "tts": {"provider": "espeak", "voice": "en-us"}},
        "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
        "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": hours}],
        "regions": [{"name": "us-east", "minWorkers": workers, "maxWorkers": workers + 1}],
        "scaling": {"sessionsPerWorker": SESSIONS_PER_WORKER, "bufferSessions": 1},
        # Silent callers: limits far beyond the test's waits, so no call ends by itself mid-rollout.
        "limits": {"maxSessionSeconds": 900, "idleTimeoutSeconds": 900},
        "observability": {"recordTranscripts": True},  # a speaker asked to repeat is told what the agent heard
    }


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    with real_worker_platform.platform_namespace(kube, "vfroll") as name:
        yield name


@pytest.fixture(scope="module")
def stack(kube, platform_namespace, livekit, world, tmp_path_factory):
    """A gateway (us-east on a LiveKit of its own that sends it webhooks, so a caller's hang-up ends its session at
    once) and an operator running real workers."""
    logs = tmp_path_factory.mktemp("rollout-logs")
    with real_worker_platform.gateway_and_operator(kube, platform_namespace, livekit, world, logs) as (
            gateway, _, fleet):
        yield gateway, fleet, logs


@pytest.fixture(scope="module")
def tenant(kube, stack, platform_namespace):
    _, fleet, _ = stack
    # The default quota of 20 concurrent sessions would refuse the new calls placed beside the 20 live ones.
    return real_worker_platform.tenant_with_key(kube, fleet, platform_namespace, "roll", allowedRegions=["us-east"],
                                                quotas={"maxConcurrentSessions": CALLS + NEW_CALLS + 5})


async def start_session(gateway, headers) -> dict:
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + 90  # new workers load their models first on a loaded machine
        while (response := await http.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.5)
    assert response.status_code == 201, response.text
    return response.json()


class MutedCaller:
    """A caller on mute: in the room and subscribed to the agent (as a person listening), sending nothing. Most of
    the live calls are these: a CallerBot streams and decodes audio in this process both ways (about 150 frames a
    second), which 20 of them, beside 20 worker pipelines, cannot get on a loaded 2-core machine."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token
        self.room = rtc.Room()

    async def join(self) -> None:
        await self.room.connect(self.url, self.token, options=rtc.RoomOptions(auto_subscribe=True))

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.room.disconnect(), 20)


@dataclass
class Call:
    """One caller in its room, and every agent participant that came or went while it was there."""

    caller: CallerBot | MutedCaller
    session_id: str
    agent: str = ""  # the agent participant that took the call
    greeting_pcm: bytes = b""
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, "joined"/"left", identity)
    hung_up_at: float | None = None

    @property
    def pod(self) -> str:
        return (room_names.agent_identity_pod(self.agent) or "") if self.agent else ""

    def cut(self) -> list[str]:
        """What went wrong before the hang-up: its agent left, or another agent joined (a recovery)."""
        until = self.hung_up_at if self.hung_up_at is not None else math.inf
        return [f"{what} {identity}" for at, what, identity in self.events
                if at < until and (identity == self.agent) == (what == "left")]


async def place_call(gateway, headers, *, speaking: bool = False, greeting: bool = False) -> Call:
    """A session and its caller in the room (a CallerBot when ``speaking``, else muted), once the agent has joined
    (and, with ``greeting``, was heard)."""
    session = await start_session(gateway, headers)
    caller = (CallerBot if speaking or greeting else MutedCaller)(session["livekitUrl"], session["token"])
    call = Call(caller, session["sessionId"])

    def joined(participant) -> None:
        if room_names.is_agent_identity(participant.identity):
            call.events.append((time.monotonic(), "joined", participant.identity))

    def left(participant) -> None:
        if room_names.is_agent_identity(participant.identity):
            call.events.append((time.monotonic(), "left", participant.identity))

    caller.room.on("participant_connected", joined)
    caller.room.on("participant_disconnected", left)
    await caller.join()
    try:
        deadline = time.monotonic() + 90  # a loaded machine: the worker builds the pipeline, then joins
        while not (agents := [p.identity for p in caller.room.remote_participants.values()
                              if room_names.is_agent_identity(p.identity)]):
            assert time.monotonic() < deadline, f"session {session['sessionId']}: no agent joined within 90 s"
            await asyncio.sleep(0.2)
        assert len(agents) == 1, f"session {session['sessionId']}: agents in the room {agents}"
        call.agent = agents[0]
        call.events = [e for e in call.events if e[2] != call.agent]  # its own arrival is no event
        if greeting:  # a fixed window from its first sound: a frame stall on a loaded machine ends no utterance early
            call.greeting_pcm = (await heard_line(caller, after=0.0, seconds=4.0, timeout=90))[1]  # the line: ~3 s
    except BaseException:
        await caller.leave()
        raise
    return call


async def heard_line(caller: CallerBot, *, after: float, seconds: float, timeout: float = 40.0) -> tuple[float, bytes]:
    """When the agent's next speech after ``after`` began, and the audio of its first ``seconds``."""
    deadline = time.monotonic() + timeout
    while not (voiced := caller.voiced_frames(since=after)):
        assert time.monotonic() < deadline, f"the caller heard nothing within {timeout:.0f} s"
        await asyncio.sleep(0.02)
    start = voiced[0]
    while time.monotonic() < start + seconds:
        await asyncio.sleep(0.05)
    return start, caller.agent_audio(start - 0.05, start + seconds)


def pods_by_hash(fleet: Fleet, namespace: str) -> dict[str, str]:
    return {p.metadata.name: p.metadata.annotations.get(labels.CONFIG_HASH, "")
            for p in fleet.pool_pods(namespace, AGENT, include_terminating=True)}


async def wait_until(what: str, check, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (found := await asyncio.to_thread(check)):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        await asyncio.sleep(interval)
    return found


async def test_a_rolling_update_under_load_cuts_no_call(stack, tenant):
    gateway, fleet, logs = stack
    _, namespace, headers = tenant
    fleet.create_agent(namespace, AGENT, agent_spec(OLD_GREETING, OLD_HOURS))
    workers = agent_spec(OLD_GREETING, OLD_HOURS)["regions"][0]["minWorkers"]
    await wait_until(f"{workers} ready workers", lambda: len(fleet.ready_pods(namespace, AGENT)) >= workers,
                     timeout=300)
    calls: list[Call] = []
    fresh: list[Call] = []
    try:
        await roll_out_under_load(gateway, fleet, namespace, headers, logs, workers, calls, fresh)
    finally:  # whatever failed, no caller stays in a room of a LiveKit the fixture stops
        await asyncio.gather(*(call.caller.leave() for call in calls + fresh if call.hung_up_at is None),
                             return_exceptions=True)


async def place_calls(gateway, headers, count: int, into: list[Call]) -> None:
    """``count`` calls, a few at a time, the speakers last (the least silence streamed before they speak); each one
    placed is kept in ``into`` (for the hang-up) even if another of its batch failed."""
    for batch in range(0, count, 5):
        placed = await asyncio.gather(*(place_call(gateway, headers, speaking=index >= count - SPEAKERS)
                                        for index in range(batch, min(count, batch + 5))), return_exceptions=True)
        into += [call for call in placed if isinstance(call, Call)]
        for failure in placed:
            if isinstance(failure, BaseException):
                raise failure


async def roll_out_under_load(gateway, fleet: Fleet, namespace: str, headers, logs, workers: int,
                              calls: list[Call], fresh: list[Call]) -> None:
    placed = time.monotonic()
    await place_calls(gateway, headers, CALLS, calls)
    old_hashes = pods_by_hash(fleet, namespace)
    old_pods = {call.pod for call in calls}
    spread = {pod: sum(call.pod == pod for call in calls) for pod in sorted(old_pods)}
    print(f"{CALLS} live calls placed in {time.monotonic() - placed:.1f} s on {len(old_pods)} worker(s): {spread}")
    assert old_pods <= set(old_hashes)
    old_hash = {old_hashes[pod] for pod in old_pods}
    assert len(old_hash) == 1

    # The spec edit: a new greeting and a new answer to "opening hours".
    patched = time.monotonic()
    fleet.patch_agent(namespace, AGENT, agent_spec(NEW_GREETING, NEW_HOURS))

    def stopping_old_pods() -> list[str]:
        return [p.metadata.name for p in fleet.pool_pods(namespace, AGENT, include_terminating=True)
                if p.metadata.name in old_pods and p.metadata.deletion_timestamp is not None]

    await wait_until("an old worker with calls to be told to stop", stopping_old_pods, timeout=300)
    print(f"first old worker told to stop {time.monotonic() - patched:.1f} s after the spec edit")

    # Each speaker speaks as soon as its own worker was told to stop (SIGTERM: readiness off, draining) and hears
    # its OLD agent answer with the OLD reply. Placed last and speaking as early as that allows: on this loaded
    # machine a caller who had streamed ~4 minutes of silence was not answered at all (see docs/resilience.md).
    asked_again: list[str] = []  # what the agent had heard instead, per speaker it asked to repeat

    async def speak_once_stopping(call: Call) -> tuple[Call, float, bytes, float]:
        await wait_until(f"{call.pod} to be told to stop", lambda: call.pod in stopping_old_pods(), timeout=420)
        told = time.monotonic()
        spoken = await call.caller.say("what are your opening hours")
        started, pcm = await heard_line(call.caller, after=spoken.voice_ended, seconds=6.0, timeout=60)  # ~4.5 s
        if retry_judge.contains(pcm, RETRY_LINE, min_share=0.5):
            # The agent did not catch the question (a loaded machine's room audio: three fresh-clone runs in a row
            # heard this from one speaker in four) and asked for it again: a caller says it again. The answer to
            # that shows which config serves the call, as the first would have.
            asked_again.append(call.caller.transcripts.text("caller", since=told) or "(no transcript)")
            spoken = await call.caller.say("what are your opening hours")
            started, pcm = await heard_line(call.caller, after=spoken.voice_ended, seconds=6.0, timeout=60)
        return call, started - spoken.voice_ended, pcm, told - patched

    retry_judge = Recogniser([RETRY_LINE, OLD_HOURS, NEW_HOURS])  # built before the calls speak: ~0.1 s
    speaking = asyncio.gather(*(speak_once_stopping(call) for call in calls if isinstance(call.caller, CallerBot)))

    # New calls land on new workers and hear the new greeting.
    def new_ready() -> list[str]:
        return [p.metadata.name for p in fleet.ready_pods(namespace, AGENT)
                if p.metadata.annotations.get(labels.CONFIG_HASH) not in old_hash]

    await wait_until("a ready worker on the new config", new_ready, timeout=300)
    # Until the Deployment has told an old worker to stop, that worker is Ready and takes new calls like any other
    # (the gateway does not yet prefer the agent's current config: a known gap, docs/resilience.md); so the new
    # calls are placed once every old worker is stopping, and must then all land on new workers.
    await wait_until("every old worker to be told to stop", lambda: old_pods <= set(stopping_old_pods()),
                     timeout=420)
    for _ in range(NEW_CALLS):
        fresh.append(await place_call(gateway, headers, greeting=True))
    fresh_hashes = pods_by_hash(fleet, namespace)
    assert all(fresh_hashes.get(call.pod) not in old_hash for call in fresh), \
        [(call.pod, fresh_hashes.get(call.pod)) for call in fresh]

    # The rollout completes around the live calls: every new worker ready while the old ones still serve.
    await wait_until(f"{workers} ready workers on the new config", lambda: len(new_ready()) >= workers, timeout=420)
    answers = await speaking
    still = pods_by_hash(fleet, namespace)
    serving = sorted(pod for pod in old_pods if pod in still)
    print(f"new workers ready {time.monotonic() - patched:.1f} s after the spec edit; old workers still serving"
          f" their calls: {len(serving)}/{len(old_pods)}")
    assert serving == sorted(old_pods)  # nobody's old worker went while its calls were live

    # The callers hang up; the old workers then exit.
    hung_up = time.monotonic()
    for call in calls:
        call.hung_up_at = time.monotonic()
    await asyncio.gather(*(call.caller.leave() for call in calls))
    await wait_until("every old worker to exit after its last call",
                     lambda: not (old_pods & set(pods_by_hash(fleet, namespace))), timeout=120)
    exited = time.monotonic()
    for call in fresh:
        call.hung_up_at = time.monotonic()
    await asyncio.gather(*(call.caller.leave() for call in fresh))

    cut = {call.session_id: call.cut() for call in calls + fresh if call.cut()}
    print(f"rolling update of {CALLS} live calls: {len(cut)} call(s) cut (goal 0); rollout {exited - patched:.1f} s"
          f" from the spec edit to the last old worker gone, of which {exited - hung_up:.1f} s after the callers hung"
          f" up; new calls on new workers: {len(fresh)}/{NEW_CALLS}; speakers' TTFA during the rollout:"
          f" {[round(ttfa * 1000) for _, ttfa, _, _ in answers]} ms, each spoken to a worker told to stop (at"
          f" {[round(at) for *_, at in answers]} s after the edit); asked to repeat the question:"
          f" {len(asked_again)} of {SPEAKERS} speakers (the agent had heard {asked_again})")
    assert cut == {}, cut  # so each speaker's answer came from the agent that greeted it: no other agent was there
    assert all(call.pod in old_pods for call, *_ in answers) and len(answers) == SPEAKERS
    assert len(asked_again) <= SPEAKERS // 2, f"{len(asked_again)} of {SPEAKERS} speakers were not understood"

    # Judged after the timed part (decoding blocks the event loop): what the callers heard.
    recogniser = Recogniser([OLD_GREETING, OLD_HOURS, NEW_GREETING, NEW_HOURS])
    for index, (call, _, pcm, _) in enumerate(answers):
        # Which reply, not how well it was heard: the two share no run of words, and a loaded machine drops frames
        # (PocketSphinx on eSpeak loses words even on clean audio), so a few of the old reply's words in order,
        # and fewer of the new one's, say which config answered.
        if not recogniser.contains(pcm, OLD_HOURS, min_share=0.2) or recogniser.contains(pcm, NEW_HOURS,
                                                                                          min_share=0.2):
            (logs / f"speaker-{index}.pcm").write_bytes(pcm)
            raise AssertionError(f"speaker {index} on {call.pod}: heard {recogniser.recognise(pcm)!r} (pcm in {logs})")
    for index, call in enumerate(fresh):
        if not recogniser.contains(call.greeting_pcm, NEW_GREETING, min_share=0.3) or recogniser.contains(
                call.greeting_pcm, OLD_GREETING, min_share=0.3):
            (logs / f"new-call-{index}.pcm").write_bytes(call.greeting_pcm)
            raise AssertionError(f"new call {index} on {call.pod}: heard {recogniser.recognise(call.greeting_pcm)!r}")
