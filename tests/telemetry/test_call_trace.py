"""One trace per call, read from a real OpenTelemetry Collector's output.

A real `voxfleet gateway` process and real `voxfleet worker` pods (the offline demo's pipeline: PocketSphinx,
the scripted LLM with a tool call to a real HTTP server, eSpeak) export to the test's collector through the
standard OTEL_* environment (a BASE URL: the exporters post to <base>/v1/traces). `voxfleet call` places a real
call through the gateway and speaks in the LiveKit room. What the collector wrote must be a single trace from the
session request (the gateway's server span, its root) through allocation and dispatch into the worker's session,
Pipecat's conversation, its turns and the STT/LLM/TTS spans of the agent's answers; with the agent's
observability.recordTranscripts off, no word of the call, the prompt or the tool's answer is in any span, and
with it on, they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.eval.eval_platform import offline_demo_spec
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import TenantUnderTest, create_tenant, delete_tenant
from voxfleet.telemetry import resource_attributes
from voxfleet.world.access import Cluster, RunnerPool
from voxfleet.world.otel_collector import Collector, Span

REGION = "us-east"
VOXFLEET = str(Path(sys.executable).with_name("voxfleet"))
# Words of the call that must not leave the worker unless the agent records transcripts: the prompt, what the
# caller said, the agent's answers (the scripted replies), the tool's arguments and its answer (the tool server
# answers every order with TOOL_ANSWER, whatever number the offline STT made of the caller's).
SYSTEM_PROMPT = "You are the front desk of the Marigold bakery."
CALLER_LINES = ["what are your opening hours", "where is my order 7"]
HOURS_REPLY = "nine in the morning"
TOOL_ANSWER = "Your parcel is with the Zephyr courier."
CONTENT_WORDS = ["marigold", "opening", "hours", HOURS_REPLY, "order_id", "zephyr"]
# Spans each call's trace must hold (service, name): the request, allocation and dispatch in the gateway; the
# dispatch, the session and Pipecat's conversation, turn and service spans in the worker.
EXPECTED_SPANS = {
    ("voxfleet-gateway", "POST /v1/agents/{agent}/sessions"), ("voxfleet-gateway", "gateway.allocate_session"),
    ("voxfleet-gateway", "gateway.dispatch"), ("voxfleet-worker", "POST /v1/dispatch"),
    ("voxfleet-worker", "voxfleet.session"), ("voxfleet-worker", "conversation"), ("voxfleet-worker", "turn"),
    ("voxfleet-worker", "stt"), ("voxfleet-worker", "llm"), ("voxfleet-worker", "tts"),
    ("voxfleet-worker", "execute_tool lookup_order"),
}
# Where a worker's session spans come from (its control API's request spans are FastAPI's, one trace per request).
SESSION_SCOPES = {"voxfleet.worker", "pipecat", "pipecat.turn"}
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # the batch leaves every 200 ms instead of 5 s


@dataclass
class TracedPlatform:
    gateway: GatewayProcess
    tenant: TenantUnderTest
    collector: Collector
    agents: dict[str, bool]  # agent -> recordTranscripts


@dataclass
class PlacedCall:
    agent: str
    session_id: str
    summary: dict
    trace_id: str
    spans: list[Span]
    worker_spans: list[Span]  # the session's spans the agent's worker exported (the call is its only one)
    seconds_to_trace: float


@pytest.fixture(scope="module")
def traced_platform(kube: Cluster, pods: RunnerPool, livekit: dict, module_otel_collector: Collector,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracedPlatform]:
    work_dir = tmp_path_factory.mktemp("call-trace")
    platform_namespace = kube.new_namespace("vftrace")
    tool = LocalHTTPServer(lambda request: Reply(200, {"found": True, "speech": TOOL_ANSWER}))
    tool.start()
    telemetry_env = {**module_otel_collector.env(), **FAST_EXPORT}
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=work_dir / "gateway.log", regions=livekit_regions(livekit),
                             extra_env=session_gateway_env(VOXFLEET_LOG_LEVEL="info",
                                                           VOXFLEET_OUTBOUND_ALLOWED_CIDRS='["127.0.0.1/32"]',
                                                           **telemetry_env)).start()
    tenant = create_tenant(kube, platform_namespace, allowed_regions=[REGION], prefix="tr")
    agents = {"quiet": False, "recorded": True}
    try:
        manifests = []
        for agent, record in agents.items():
            spec = offline_demo_spec(f"{tool.url}/orders/lookup", systemPrompt=SYSTEM_PROMPT,
                                     observability={"recordTranscripts": record})
            with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
                response = http.put(f"/v1/agents/{agent}", json=spec)
                assert response.status_code in (200, 201), response.text
            config_map = f"{agent}-config"
            identity = resource_attributes.encode({resource_attributes.TENANT: tenant.name,
                                                   resource_attributes.AGENT: agent,
                                                   resource_attributes.REGION: REGION})
            manifests.append(worker_pods.agent_config_map(tenant.namespace, config_map, tenant=tenant.name,
                                                          agent=agent, spec=spec))
            manifests.append(worker_pods.real_worker_pod(
                pods, tenant=tenant.name, agent=agent, region=REGION, namespace=tenant.namespace,
                config_map=config_map, name=f"{agent}-0",
                extra_env={"VOXFLEET_OUTBOUND_ALLOWED_CIDRS": '["127.0.0.1/32"]', **telemetry_env,
                           "OTEL_RESOURCE_ATTRIBUTES": identity}))
        names = worker_pods.create(kube, tenant.namespace, manifests)
        started = time.monotonic()
        worker_pods.wait_ready(kube, tenant.namespace, names, timeout=120, pods=pods)
        print(f"[call trace] {len(names)} workers ready in {time.monotonic() - started:.1f} s")
        yield TracedPlatform(gateway=gateway, tenant=tenant, collector=module_otel_collector, agents=agents)
    finally:
        gateway.stop()
        tool.stop()
        delete_tenant(kube, tenant)
        kube.delete_namespace(platform_namespace)


def place_call(platform: TracedPlatform, agent: str) -> PlacedCall:
    """`voxfleet call` through the gateway, as a user runs it; then the call's whole trace from the collector."""
    argv = [VOXFLEET, "call", agent, "--gateway", platform.gateway.url, "--json", "--answer-timeout", "20"]
    for line in CALLER_LINES:
        argv += ["--say", line]
    env = {**os.environ, "VOXFLEET_API_KEY": platform.tenant.key, "VOXFLEET_DEV_DIR": "/nonexistent"}
    deadline = time.monotonic() + 30
    while True:  # a worker just Ready may not be in the gateway's view yet (503 no_capacity)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
        if done.returncode == 0 or "no_capacity" not in done.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, f"voxfleet call failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    session_id = summary["sessionId"]
    call_ended = time.monotonic()

    def whole(spans: list[Span]) -> bool:
        mine = [s for s in spans if s.attributes.get("voxfleet.session_id") == session_id
                or s.attributes.get("conversation.id") == session_id]
        trace_ids = {s.trace_id for s in mine}
        if len(trace_ids) != 1:
            return False
        in_trace = {(s.service_name, s.name) for s in spans if s.trace_id in trace_ids}
        return EXPECTED_SPANS <= in_trace and ("voxfleet-worker", "conversation") in in_trace
    spans = platform.collector.wait_for_spans(whole, timeout=30)
    seconds_to_trace = time.monotonic() - call_ended
    trace_id = next(s.trace_id for s in spans if s.attributes.get("conversation.id") == session_id)
    return PlacedCall(agent=agent, session_id=session_id, summary=summary, trace_id=trace_id,
                      spans=[s for s in spans if s.trace_id == trace_id],
                      worker_spans=[s for s in spans if s.resource.get(resource_attributes.AGENT) == agent
                                    and s.scope in SESSION_SCOPES],
                      seconds_to_trace=seconds_to_trace)


def assert_one_tree_from_the_request(call: PlacedCall) -> None:
    """Every span of the call in one trace, one root (the gateway's request span), each parent in the trace."""
    by_id = {s.span_id: s for s in call.spans}
    roots = [s for s in call.spans if s.is_root]
    assert [(r.service_name, r.name) for r in roots] == [("voxfleet-gateway", "POST /v1/agents/{agent}/sessions")]
    orphans = [(s.service_name, s.name) for s in call.spans if not s.is_root and s.parent_span_id not in by_id]
    assert orphans == [], f"spans whose parent is not in the trace: {orphans}"
    elsewhere = sorted({(s.name, s.trace_id) for s in call.worker_spans if s.trace_id != call.trace_id})
    assert elsewhere == [], f"the worker's spans of this call in other traces: {elsewhere}"

    def chain(span: Span) -> list[str]:
        names = [span.name]
        while span.parent_span_id:
            span = by_id[span.parent_span_id]
            names.append(span.name)
        return names[::-1]
    llm = next(s for s in call.spans if s.name == "llm")
    assert chain(llm) == ["POST /v1/agents/{agent}/sessions", "gateway.allocate_session", "gateway.dispatch",
                          "POST /v1/dispatch", "voxfleet.session", "conversation", "turn", "llm"]
    tool = next(s for s in call.spans if s.name == "execute_tool lookup_order")
    assert chain(tool)[-3:] == ["conversation", "turn", "execute_tool lookup_order"]
    assert tool.attributes["voxfleet.tool.outcome"] == "ok" and tool.attributes["http.response.status_code"] == 200
    services = sorted({s.service_name for s in call.spans})
    assert services == ["voxfleet-gateway", "voxfleet-worker"]
    assert {s.attributes.get("voxfleet.session_id") for s in call.spans if "voxfleet.session_id" in s.attributes} \
        == {call.session_id}
    turns = [s for s in call.spans if s.name == "turn"]
    counts = {name: sum(1 for s in call.spans if s.name == name)
              for name in ("turn", "stt", "llm", "tts", "execute_tool lookup_order")}
    print(f"[call trace] {call.agent}: trace {call.trace_id}, {len(call.spans)} spans "
          f"({sum(s.service_name == 'voxfleet-gateway' for s in call.spans)} gateway, "
          f"{sum(s.service_name == 'voxfleet-worker' for s in call.spans)} worker; {counts}), whole in the "
          f"collector {call.seconds_to_trace:.2f} s after the caller hung up; answered "
          f"{call.summary['answered']}/{call.summary['asked']}")
    assert len(turns) >= len(CALLER_LINES)


def text_of(spans: list[Span]) -> str:
    """Everything a span carries that a reader of the traces sees: names, attributes, events, resource."""
    return json.dumps([{"name": s.name, "attributes": s.attributes, "events": s.events, "resource": s.resource}
                       for s in spans]).lower()


def test_a_call_without_recorded_transcripts_is_one_trace_without_its_words(traced_platform: TracedPlatform):
    call = place_call(traced_platform, "quiet")
    assert call.summary["answered"] == call.summary["asked"] == len(CALLER_LINES), call.summary
    assert_one_tree_from_the_request(call)
    carried = text_of(call.spans + call.worker_spans)
    leaked = [word for word in CONTENT_WORDS if word.lower() in carried]
    assert leaked == [], f"call content in the spans of an agent that does not record transcripts: {leaked}"
    # Not vacuous: the service spans did carry the call's content, and the filter took it out (and says so).
    redacted = {s.name: set(s.attributes.get("voxfleet.content_redacted", [])) for s in call.spans
                if s.name in ("stt", "llm", "tts", "execute_tool lookup_order")}
    print(f"[call trace] quiet: attributes removed per service span: "
          f"{ {name: sorted(keys) for name, keys in redacted.items()} }")
    assert "transcript" in redacted["stt"] and "text" in redacted["tts"]
    assert {"input", "output"} <= redacted["llm"]
    assert {"gen_ai.tool.call.arguments", "gen_ai.tool.call.result"} <= redacted["execute_tool lookup_order"]


def test_a_call_with_recorded_transcripts_carries_its_words(traced_platform: TracedPlatform):
    call = place_call(traced_platform, "recorded")
    assert call.summary["answered"] == call.summary["asked"] == len(CALLER_LINES), call.summary
    assert_one_tree_from_the_request(call)
    by_name: dict[str, list[Span]] = {}
    for span in call.spans:
        by_name.setdefault(span.name, []).append(span)
    tts_text = " ".join(str(s.attributes.get("text", "")) for s in by_name["tts"]).lower()
    llm_input = " ".join(str(s.attributes.get("input", "")) for s in by_name["llm"]).lower()
    llm_output = " ".join(str(s.attributes.get("output", "")) for s in by_name["llm"]).lower()
    transcripts = " ".join(str(s.attributes.get("transcript", "")) for s in by_name["stt"]).lower()
    heard = " ".join(turn.get("heard") or "" for turn in call.summary["turns"]).lower()
    print(f"[call trace] recorded: stt transcripts {transcripts!r}; tts text {tts_text[:160]!r}")
    assert HOURS_REPLY in tts_text and HOURS_REPLY in llm_output
    assert "marigold" in llm_input  # the prompt
    assert "order_id" in llm_input  # the tool call's arguments, as the LLM saw them
    (tool,) = by_name["execute_tool lookup_order"]
    assert "order_id" in tool.attributes["gen_ai.tool.call.arguments"]  # and as the tool got them
    assert "zephyr" in tool.attributes["gen_ai.tool.call.result"].lower()
    assert "zephyr" in llm_input and "zephyr" in tts_text  # the tool's answer, and the agent saying it
    assert heard and transcripts and all(word in transcripts for word in heard.split())
    assert not any("voxfleet.content_redacted" in s.attributes for s in call.spans)
