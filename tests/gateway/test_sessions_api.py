"""Sessions against stand-in worker pods (real processes at their pod IPs, found through the gateway's Pod
watch) and the world's two real livekit-servers: nearest region first, a full region falls back to the next,
no capacity is 503, the caller's token joins the room on the chosen region's LiveKit, trace context reaches the
worker, and a tenant's quota holds."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from livekit import api as lk_api
from livekit import rtc

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant

pytestmark = pytest.mark.world

AGENT = "support"
SPEC = {"greeting": "Hello!", "regions": [{"name": "us-east", "minWorkers": 0}, {"name": "eu-west", "minWorkers": 0},
                                          {"name": "ap-south", "minWorkers": 0}]}


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            extra_env=session_gateway_env())
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east", "eu-west", "ap-south"])
    yield created
    delete_tenant(kube, created)


@pytest.fixture(scope="module")
def workers(kube, pods, tenant, gateway):
    """us-east: two workers with one slot each; eu-west: one worker with two slots; ap-south: none."""
    with httpx.Client(base_url=gateway.url, headers=tenant.headers()) as http:
        assert http.put(f"/v1/agents/{AGENT}", json=SPEC).status_code == 201
    manifests = [worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=1,
                                         join_rooms=True, name=f"us-{i}") for i in range(2)]
    manifests.append(worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region="eu-west", slots=2,
                                             join_rooms=True, name="eu-0"))
    names = worker_pods.create(kube, tenant.namespace, manifests)
    ips = worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)
    return {"us-east": [ips["us-0"], ips["us-1"]], "eu-west": [ips["eu-0"]]}


@pytest.fixture
def api(gateway, tenant, workers):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        yield http
        _end_all(http, tenant, workers)


def _end_all(http: httpx.Client, tenant, workers) -> None:
    """Tests share the module's workers: end whatever a test left running."""
    for ip in [ip for region in workers.values() for ip in region]:
        try:
            dispatches = httpx.get(f"http://{ip}:8080/test/dispatches",
                                   headers=worker_pods.worker_headers(tenant.namespace)).json()
        except httpx.HTTPError:
            continue  # restarting (livekit's FFI aborts a process whose event loop starves): it holds nothing
        for dispatch in dispatches:
            http.delete(f"/v1/sessions/{dispatch['sessionId']}")


def _start(api: httpx.Client, **body) -> httpx.Response:
    deadline = time.monotonic() + 15
    while True:  # the gateway's watch needs a moment to see pods that just turned Ready
        response = api.post(f"/v1/agents/{AGENT}/sessions", json=body)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_the_nearest_region_with_capacity_is_chosen_then_the_next_then_503(api, livekit, workers):
    first = _start(api, callerRegion="us-east")
    assert first.status_code == 201, first.text
    assert first.json()["region"] == "us-east" and first.json()["livekitUrl"] == livekit["us-east"].url
    second = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
    assert second.json()["region"] == "us-east"  # the second us-east worker
    third = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
    assert third.status_code == 201 and third.json()["region"] == "eu-west"  # us-east is full: the next nearest
    assert third.json()["livekitUrl"] == livekit["eu-west"].url
    fourth = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
    assert fourth.json()["region"] == "eu-west"
    none_left = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
    assert none_left.status_code == 503 and none_left.json()["code"] == "no_capacity"
    assert int(none_left.headers["retry-after"]) >= 1

    assert api.delete(f"/v1/sessions/{first.json()['sessionId']}").status_code == 204
    again = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
    assert again.status_code == 201 and again.json()["region"] == "us-east"  # the freed slot is used


def test_caller_location_and_region_preference_order_the_regions(api):
    from_europe = _start(api, callerRegion="eu-west")
    assert from_europe.json()["region"] == "eu-west"
    from_asia = api.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "ap-south"})
    assert from_asia.json()["region"] == "eu-west"  # ap-south has no workers; eu-west is nearest to it
    preferred = api.post(f"/v1/agents/{AGENT}/sessions", json={"region": "us-east", "callerRegion": "eu-west"})
    assert preferred.json()["region"] == "us-east"


async def test_the_callers_token_joins_the_room_on_the_chosen_livekit_with_the_agent_in_it(api, livekit):
    created = _start(api, callerRegion="eu-west", participantIdentity="alice", participantName="Alice").json()
    assert created["participantIdentity"] == "alice"
    room = rtc.Room()
    await room.connect(created["livekitUrl"], created["token"])
    try:
        deadline = time.monotonic() + 15
        while not any(p.identity.startswith("vf-agent.") for p in room.remote_participants.values()):
            assert time.monotonic() < deadline, "the agent never joined the caller's room"
            await asyncio.sleep(0.05)
        assert room.name == created["room"] and room.local_participant.identity == "alice"
    finally:
        await room.disconnect()
    lk = livekit[created["region"]]
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        rooms = {r.name for r in (await server.room.list_rooms(lk_api.ListRoomsRequest())).rooms}
    assert created["room"] in rooms  # on the region's own LiveKit...
    other = livekit["us-east"]
    async with lk_api.LiveKitAPI(other.http_url, other.api_key, other.api_secret) as server:
        rooms = {r.name for r in (await server.room.list_rooms(lk_api.ListRoomsRequest())).rooms}
    assert created["room"] not in rooms  # ...and not on the other one


def test_get_and_delete_a_session(api):
    created = _start(api).json()
    seen = api.get(f"/v1/sessions/{created['sessionId']}")
    assert seen.status_code == 200
    assert seen.json()["phase"] == "active" and seen.json()["room"] == created["room"]
    assert seen.json()["agent"] == AGENT and seen.json()["region"] == created["region"]
    assert api.delete(f"/v1/sessions/{created['sessionId']}").status_code == 204
    assert api.get(f"/v1/sessions/{created['sessionId']}").json()["phase"] == "ended"


@pytest.mark.parametrize("session_id", ["abcdefgh", "x" * 200, "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA"])
def test_unknown_or_forged_session_ids_are_404(api, session_id):
    for method in ("GET", "DELETE"):
        response = api.request(method, f"/v1/sessions/{session_id}")
        assert response.status_code == 404 and response.json()["code"] == "session_not_found"


def test_a_tampered_session_id_is_404(api):
    session_id = _start(api).json()["sessionId"]
    payload, mac = session_id.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert api.get(f"/v1/sessions/{flipped}.{mac}").status_code == 404
    assert api.delete(f"/v1/sessions/{flipped}.{mac}").status_code == 404
    assert api.get(f"/v1/sessions/{session_id}").json()["phase"] == "active"


@pytest.mark.parametrize("body, status, code", [
    ({"region": "mars"}, 422, "region_not_served"),
    ({"callerRegion": "moon"}, 422, "unknown_caller_region"),
    ({"participantIdentity": "vf-agent.x.y"}, 422, "invalid_request"),
    ({"participantIdentity": "has spaces"}, 422, "invalid_request"),
    ({"metadata": {"blob": "x" * 5000}}, 422, "invalid_request"),
    ({"unknownField": 1}, 422, "invalid_request"),
])
def test_bad_session_requests_are_4xx(api, body, status, code):
    response = api.post(f"/v1/agents/{AGENT}/sessions", json=body)
    assert response.status_code == status and response.json()["code"] == code, response.text


def test_an_unknown_agent_is_404(api):
    response = api.post("/v1/agents/nobody/sessions", json={})
    assert response.status_code == 404 and response.json()["code"] == "agent_not_found"


def test_trace_context_and_metadata_reach_the_worker(api, workers, tenant):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = api.post(f"/v1/agents/{AGENT}/sessions", json={"metadata": {"order": 42}},
                        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    if response.status_code == 503:
        response = _start(api, metadata={"order": 42})
    assert response.status_code == 201
    session_id = response.json()["sessionId"]
    seen = []
    for ip in [ip for region in workers.values() for ip in region]:
        seen += [d for d in httpx.get(f"http://{ip}:8080/test/dispatches",
                                      headers=worker_pods.worker_headers(tenant.namespace)).json()
                 if d["sessionId"] == session_id]
    assert len(seen) == 1
    dispatch = seen[0]
    assert dispatch["metadata"] == {"order": 42}
    # The worker's spans join the call's own trace (the caller's traceparent is a link of the gateway's span, not
    # its parent: a tenant does not choose the platform's trace ids), in the body and in the header alike.
    call_trace = dispatch["traceparent"].split("-")[1]
    assert call_trace != trace_id and dispatch["traceparentHeader"].split("-")[1] == call_trace
    assert dispatch["agentIdentity"].startswith("vf-agent.") and dispatch["recovery"] is False


def test_the_tenants_concurrent_session_quota_gives_429(kube, platform_namespace, pods, gateway):
    small = create_tenant(kube, platform_namespace, allowed_regions=["us-east"],
                          quotas={"maxConcurrentSessions": 2}, prefix="quota")
    try:
        with httpx.Client(base_url=gateway.url, headers=small.headers(), timeout=15) as http:
            assert http.put("/v1/agents/desk", json={"regions": [{"name": "us-east", "minWorkers": 0}]}
                            ).status_code == 201
            names = worker_pods.create(kube, small.namespace, [worker_pods.standin_pod(
                pods, tenant=small.name, agent="desk", region="us-east", slots=3, name="desk-0")])
            worker_pods.wait_ready(kube, small.namespace, names)
            deadline = time.monotonic() + 15
            while (first := http.post("/v1/agents/desk/sessions", json={})).status_code == 503:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert first.status_code == 201
            assert http.post("/v1/agents/desk/sessions", json={}).status_code == 201
            over = http.post("/v1/agents/desk/sessions", json={})
            assert over.status_code == 429 and over.json()["code"] == "quota_exceeded"
            assert int(over.headers["retry-after"]) >= 1
            # the refused claim was released: the worker holds exactly the two admitted sessions
            load = httpx.get(f"http://{worker_pods.wait_ready(kube, small.namespace, names)['desk-0']}:8080/v1/load",
                             headers=worker_pods.worker_headers(small.namespace)).json()
            assert load["active"] == 2
            assert http.delete(f"/v1/sessions/{first.json()['sessionId']}").status_code == 204
            assert http.post("/v1/agents/desk/sessions", json={}).status_code == 201
    finally:
        delete_tenant(kube, small)


def test_allocation_metrics_are_exported(api, gateway):
    _start(api)
    metrics = gateway.metrics()
    assert 'voxfleet_gateway_allocations_total{agent="support",region="us-east",result="ok"' in metrics \
        or 'voxfleet_gateway_allocations_total{agent="support",region="eu-west",result="ok"' in metrics
    assert "voxfleet_gateway_allocation_seconds_bucket" in metrics
    assert 'voxfleet_gateway_workers{agent="support",ready="true",region="us-east"' in metrics


def test_spans_reach_an_otlp_collector_with_the_callers_trace_linked(kube, platform_namespace, gateway_logs, livekit,
                                                                    tenant, workers):
    """The OTLP/HTTP exporter (the real client library) sends the gateway's spans to a collector given as the
    standard BASE URL (OTEL_EXPORTER_OTLP_ENDPOINT, as the chart sets it): they arrive at <base>/v1/traces. Each
    call is its own trace, the caller's traceparent a link: two calls sending the same one are two traces."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.fakes.http_server import LocalHTTPServer, Reply

    with LocalHTTPServer(lambda request: Reply(200, b"", {"Content-Type": "application/x-protobuf"})) as collector:
        traced = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                               extra_env=session_gateway_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
                                                             OTEL_BSP_SCHEDULE_DELAY="100"))
        try:
            trace_id, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
            sessions = []
            with httpx.Client(base_url=traced.url, headers=tenant.headers(), timeout=15) as http:
                for _ in range(2):
                    deadline = time.monotonic() + 15
                    while (created := http.post(f"/v1/agents/{AGENT}/sessions", json={}, headers={
                            "traceparent": f"00-{trace_id}-{caller_span}-01"})).status_code == 503:
                        assert time.monotonic() < deadline
                        time.sleep(0.2)
                    assert created.status_code == 201
                    sessions.append(created.json()["sessionId"])
                    http.delete(f"/v1/sessions/{sessions[-1]}")
            spans: list = []
            deadline = time.monotonic() + 20
            while sum(span.name == "gateway.dispatch" for span in spans) < 2:
                assert time.monotonic() < deadline, f"spans exported: {sorted(span.name for span in spans)}"
                time.sleep(0.2)
                spans = [span for call in collector.calls("/v1/traces")
                         for resource_spans in ExportTraceServiceRequest.FromString(call.body).resource_spans
                         for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
            requests = [span for span in spans if span.name == "POST /v1/agents/{agent}/sessions"]
            assert len(requests) == 2 and len({span.trace_id for span in requests}) == 2  # one trace per call
            for request_span in requests:
                assert not request_span.parent_span_id and request_span.trace_id.hex() != trace_id
                assert [(link.trace_id.hex(), link.span_id.hex()) for link in request_span.links] == [
                    (trace_id, caller_span)]  # the caller's trace, linked
                by_name = {span.name: span for span in spans if span.trace_id == request_span.trace_id}
                assert by_name["gateway.allocate_session"].parent_span_id == request_span.span_id
                assert by_name["gateway.dispatch"].parent_span_id == by_name["gateway.allocate_session"].span_id
        finally:
            traced.stop()
