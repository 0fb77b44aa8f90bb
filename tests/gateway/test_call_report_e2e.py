"""Acceptance of the end-of-call report (issue 18): a real call through the gateway to a real worker the operator
runs, a caller bot that times each answer as it hears it, and after the hang-up the call's report, in the call
history (`GET /v1/sessions/{id}`) and at the tenant's webhook receiver (a real HTTP server on 127.0.0.1,
registered through `POST /v1/webhooks`, the signature checked with the documented recipe), holds the same turns
and TTFA within 50 ms of what the caller heard.

The worker times TTFA from the caller's last voiced audio reaching it to its answer's first audio frame leaving
it; a caller hears the two network legs through livekit-server on top. They are measured in the same run (a tone
from one participant to another through the same server) and put back, as tests/worker/test_worker_calls.py does
for the worker's TTFA histogram; both the raw and the corrected figures are printed.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.callers.caller_bot import CALLER_GONE_S, CallerBot, Recogniser, measure_two_legs, median
from tests.gateway import real_worker_platform
from tests.gateway.webhook_receiver import Receiver, verify
from voxfleet.api.call_report import CallReport

pytestmark = [pytest.mark.world, pytest.mark.realtime, pytest.mark.timeout(600)]

AGENT = "reporter"
GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
TURNS = 3
SPEC = {
    "greeting": GREETING,
    "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                 "tts": {"provider": "espeak", "voice": "en-us"}},
    "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
    "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS}],
    "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 1}],
    "scaling": {"sessionsPerWorker": 2, "bufferSessions": 0},
    "limits": {"maxSessionSeconds": 300, "idleTimeoutSeconds": 120},
    "observability": {"recordTranscripts": True},
}
GATEWAY_ENV = {
    "VOXFLEET_CALL_REPORT_SWEEP_SECONDS": "1",
    "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": json.dumps(["127.0.0.1/32"]),  # the receiver runs on the test's loopback
    "VOXFLEET_TENANT_WEBHOOK_POLL_SECONDS": "0.5",
    "VOXFLEET_TENANT_WEBHOOK_RETRY_BASE_SECONDS": "0.5",
}


@pytest.fixture(scope="module")
def stack(kube, installed_crds, livekit, world, module_database, tmp_path_factory):
    logs = tmp_path_factory.mktemp("report-e2e-logs")
    with real_worker_platform.platform_namespace(kube, "vfrep") as namespace:
        with real_worker_platform.gateway_and_operator(kube, namespace, livekit, world, logs,
                                                       database_url=module_database, gateway_env=GATEWAY_ENV
                                                       ) as (gateway, lk, fleet):
            yield gateway, lk, fleet, namespace


@pytest.fixture(scope="module")
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


async def test_the_report_holds_the_turns_and_ttfa_the_caller_heard(kube, stack, receiver):
    gateway, lk, fleet, namespace = stack
    _, _, headers = real_worker_platform.tenant_with_key(kube, fleet, namespace, "rep", allowedRegions=["us-east"])
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        assert (await http.put(f"/v1/agents/{AGENT}", json=SPEC)).status_code == 201
        hook = await http.post("/v1/webhooks", json={"url": f"{receiver.url}/voxfleet", "events": ["session.ended"],
                                                     "description": "call reports"})
        assert hook.status_code == 201, hook.text
        secret = hook.json()["secret"]
        deadline = time.monotonic() + 240
        while not (await http.get(f"/v1/agents/{AGENT}")).json()["ready"]:
            assert time.monotonic() < deadline, "the agent never became Ready"
            await asyncio.sleep(0.5)
        deadline = time.monotonic() + 30
        while (created := await http.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, created.text
            await asyncio.sleep(0.5)
        assert created.status_code == 201, created.text
    session = created.json()
    sid = session["sessionId"]

    heard, answers = [], []
    legs = asyncio.create_task(measure_two_legs(lk, count=8, gap_s=0.8))  # the transport, under the same load
    async with CallerBot(session["livekitUrl"], session["token"]) as caller:
        await caller.wait_for_agent_speech(timeout=30)  # the greeting
        for _ in range(TURNS):
            spoken = await caller.say("what are your opening hours")
            answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=20)
            heard.append(answer.start - spoken.voice_ended)
            answers.append(answer.pcm)
    hung_up = time.monotonic()
    two_legs = median(await legs)
    recogniser = Recogniser([GREETING, HOURS])
    understood = [pcm for pcm in answers if recogniser.contains(pcm, HOURS, min_share=0.6)]
    assert len(understood) >= TURNS - 1, [recogniser.recognise(pcm) for pcm in answers]

    # The history: the call ends on its worker when the caller is gone; the gateway pulls and stores its report.
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + CALLER_GONE_S + 30
        while (view := (await http.get(f"/v1/sessions/{sid}")).json()).get("report") is None:
            assert time.monotonic() < deadline, f"no report in the history: {view}"
            await asyncio.sleep(0.5)
    stored = CallReport.model_validate({**view["report"], "transcript": view.get("transcript")})
    print(f"report in the history {time.monotonic() - hung_up:.1f} s after the hang-up: end {stored.end_reason},"
          f" {stored.duration_ms} ms, usage {stored.usage.to_wire()}, cost {stored.cost_micros} micro-USD")
    reported = [turn.ttfa_ms / 1000 if turn.ttfa_ms is not None else None for turn in stored.turns]
    errors = [abs(h - two_legs - r) for h, r in zip(heard, reported) if r is not None]
    print(f"caller heard TTFA {[round(h * 1000) for h in heard]} ms; two legs {two_legs * 1000:.0f} ms;"
          f" report {[t.ttfa_ms for t in stored.turns]} ms; |heard - legs - reported| median"
          f" {median(errors) * 1000:.0f} ms; outcomes {[t.outcome for t in stored.turns]}")
    assert len(stored.turns) == TURNS and all(r is not None for r in reported), stored.turns
    assert median(errors) <= 0.05, (heard, two_legs, reported)
    assert stored.end_reason == "caller-left" and stored.source == "worker" and stored.agent == AGENT
    assert stored.usage.stt_ms > 0 and stored.usage.tts_characters >= len(GREETING)
    assert stored.usage.llm_prompt_tokens > 0 and stored.usage.llm_completion_tokens > 0
    assert stored.cost_micros > 0 and stored.transcript  # the agent records transcripts: so does its report
    assert [line.role for line in stored.transcript].count("caller") >= TURNS - 1

    # The webhook: session.ended, signed, carrying the same report.
    deadline = time.monotonic() + 30
    while not (deliveries := receiver.requests("/voxfleet")):
        assert time.monotonic() < deadline, "no session.ended webhook arrived"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # a second delivery of the same event would arrive now
    ours = [d for d in receiver.requests("/voxfleet") if json.loads(d.body)["data"]["sessionId"] == sid]
    assert len(ours) == 1, [d.body[:200] for d in ours]
    delivery = ours[0]
    assert verify(secret, delivery.headers["voxfleet-signature"], delivery.body)
    assert not verify(secret + "x", delivery.headers["voxfleet-signature"], delivery.body)
    event = json.loads(delivery.body)
    assert event["type"] == "session.ended" and event["id"] == delivery.headers["voxfleet-event-id"]
    sent = CallReport.model_validate(event["data"])
    assert sent.turns == stored.turns and sent.cost_micros == stored.cost_micros
    assert sent.model_dump(exclude={"transcript"}) == stored.model_dump(exclude={"transcript"})
    assert sent.transcript == stored.transcript  # the tenant's own server gets what the history keeps
    print(f"session.ended delivered once, signature valid, event {event['id']}")
