"""LiveKit webhooks and recovery, with a real livekit-server that sends its webhooks to a real gateway process,
and stand-in worker pods that join the rooms as the agent participant.

Refused: unsigned, wrongly signed, tampered, expired, replayed and stale deliveries. Acted on: a room started
outside the API gets a worker; the caller leaving or the room finishing ends the session at its worker; a worker
lost mid-call (pod deleted, process crashed, or its participant gone while the caller stays) is replaced by
another worker that joins the caller's room with `recovery: true`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import inspect
import json
import time
import uuid

import httpx
import pytest
from google.protobuf.json_format import MessageToJson
from livekit import api as lk_api
from livekit import rtc
from livekit.protocol import models, webhook

from tests.callers.caller_bot import CALLER_GONE_S
from tests.gateway import webhook_livekit, worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_tenant, delete_tenant

pytestmark = pytest.mark.world

AGENT = "frontdesk"


@pytest.fixture(scope="module")
def stack(kube, platform_namespace, gateway_logs, livekit, world, tmp_path_factory):
    """A gateway whose us-east is served by a LiveKit that sends webhooks to it."""
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=gateway_logs / "webhook-gateway.log", regions={})
    lk = webhook_livekit.start(webhook_url=f"{gateway.url}/livekit/webhook/us-east",
                               state_dir=tmp_path_factory.mktemp("webhook-livekit"), world_id=world.world_id)
    regions = livekit_regions(livekit)
    regions["us-east"] = {"url": lk.url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}
    gateway.env.update(session_gateway_env(VOXFLEET_REGIONS=json.dumps(regions)))
    gateway.start()
    yield gateway, lk
    gateway.stop()
    lk.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
    yield created
    delete_tenant(kube, created)


@pytest.fixture(scope="module")
def workers(kube, pods, tenant, stack):
    gateway, _ = stack
    with httpx.Client(base_url=gateway.url, headers=tenant.headers()) as http:
        assert http.put(f"/v1/agents/{AGENT}", json={"regions": [{"name": "us-east", "minWorkers": 0}]}
                        ).status_code == 201
    return _add_workers(kube, pods, tenant, 3)


def _add_workers(kube, pods, tenant, count: int) -> dict[str, str]:
    manifests = [worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region="us-east", slots=2,
                                         join_rooms=True, grace_seconds=0) for _ in range(count)]
    names = worker_pods.create(kube, tenant.namespace, manifests)
    return worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)


def _signed(lk, event: webhook.WebhookEvent, *, secret: str | None = None, ttl_s: int = 300,
            body: str | None = None) -> tuple[str, dict[str, str]]:
    text = MessageToJson(event)
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    token = (lk_api.AccessToken(lk.api_key, secret or lk.api_secret).with_sha256(digest)
             .with_ttl(dt.timedelta(seconds=ttl_s)).to_jwt())
    return body if body is not None else text, {"Authorization": token, "Content-Type": "application/webhook+json"}


def _event(kind: str = "participant_joined", **changes) -> webhook.WebhookEvent:
    event = webhook.WebhookEvent(event=kind, id=f"EV_{uuid.uuid4().hex[:12]}", created_at=int(time.time()),
                                 room=models.Room(name="someone.else.room", sid="RM_x"))
    for name, value in changes.items():
        setattr(event, name, value)
    return event


def test_webhooks_that_do_not_verify_are_refused(stack):
    gateway, lk = stack
    url = f"{gateway.url}/livekit/webhook/us-east"
    body, headers = _signed(lk, _event())
    assert httpx.post(url, content=body).json()["code"] == "missing_signature"
    assert httpx.post(url, content=body, headers={"Authorization": "not-a-jwt"}).status_code == 401
    wrong_body, wrong_headers = _signed(lk, _event(), secret="another-secret-0123456789abcdef0123456789")
    refused = httpx.post(url, content=wrong_body, headers=wrong_headers)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_signature"
    tampered = body.replace("someone.else.room", "someone.else.roon")
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    expired_body, expired_headers = _signed(lk, _event(), ttl_s=-120)
    assert httpx.post(url, content=expired_body, headers=expired_headers).status_code == 401
    assert lk.api_secret not in refused.text


def test_a_replayed_or_stale_webhook_is_refused(stack):
    gateway, lk = stack
    url = f"{gateway.url}/livekit/webhook/us-east"
    body, headers = _signed(lk, _event())
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200 and first.json()["result"] == "ignored"
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 409 and replay.json()["code"] == "duplicate_event"
    old_body, old_headers = _signed(lk, _event(created_at=int(time.time()) - 3600))
    stale = httpx.post(url, content=old_body, headers=old_headers)
    assert stale.status_code == 400 and stale.json()["code"] == "stale_event"
    # without the region in the path, the signing key alone identifies the LiveKit
    plain_body, plain_headers = _signed(lk, _event())
    assert httpx.post(f"{gateway.url}/livekit/webhook", content=plain_body, headers=plain_headers).status_code == 200


async def _agents_in_room(lk, room: str) -> list[models.ParticipantInfo]:
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        try:
            answer = await server.room.list_participants(lk_api.ListParticipantsRequest(room=room))
        except lk_api.TwirpError:
            return []
        return [p for p in answer.participants if p.identity.startswith("vf-agent.")]


async def _wait(what: str, probe, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_room_started_outside_the_api_gets_a_worker(stack, tenant, workers):
    """A SIP dispatch rule with room prefix `<tenant>.<agent>.` creates the room; no REST call."""
    gateway, lk = stack
    room_name = f"{tenant.name}.{AGENT}.sip-{uuid.uuid4().hex[:6]}"
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        await server.room.create_room(lk_api.CreateRoomRequest(name=room_name, empty_timeout=60))
    agents = await _wait("an agent in the SIP room", lambda: _agents_in_room(lk, room_name))
    assert len(agents) == 1

    async def session_id():
        async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
            rooms = (await server.room.list_rooms(lk_api.ListRoomsRequest(names=[room_name]))).rooms
        return rooms and json.loads(rooms[0].metadata or "{}").get("voxfleet.dev/session")

    sid = await _wait("the session id in the room metadata", session_id)
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers()) as http:
        seen = (await http.get(f"/v1/sessions/{sid}")).json()
        assert seen["room"] == room_name and seen["phase"] == "active" and seen["agent"] == AGENT
        async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
            await server.room.delete_room(lk_api.DeleteRoomRequest(room=room_name))
        await _wait("the session to end with its room",
                    lambda: _phase(http, sid, "ended"))


async def test_a_room_whose_metadata_names_the_agent_gets_a_worker(stack, tenant, workers):
    """A client-created room with any name: the agent is named by the room's metadata."""
    _, lk = stack
    room_name = f"lobby-{uuid.uuid4().hex[:6]}"
    metadata = json.dumps({"voxfleet.dev/tenant": tenant.name, "voxfleet.dev/agent": AGENT, "desk": "front"})
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        await server.room.create_room(lk_api.CreateRoomRequest(name=room_name, empty_timeout=60, metadata=metadata))
    assert len(await _wait("an agent in the room", lambda: _agents_in_room(lk, room_name))) == 1
    async with lk_api.LiveKitAPI(lk.http_url, lk.api_key, lk.api_secret) as server:
        room = (await server.room.list_rooms(lk_api.ListRoomsRequest(names=[room_name]))).rooms[0]
        await server.room.delete_room(lk_api.DeleteRoomRequest(room=room_name))
    kept = json.loads(room.metadata)
    assert kept["desk"] == "front" and kept["voxfleet.dev/session"]  # the client's metadata stays, the session added


async def _phase(http: httpx.AsyncClient, session_id: str, phase: str) -> bool:
    return (await http.get(f"/v1/sessions/{session_id}")).json().get("phase") == phase


async def _call(gateway, tenant, body: dict | None = None) -> tuple[dict, rtc.Room]:
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        response = await http.post(f"/v1/agents/{AGENT}/sessions", json=body or {})
        assert response.status_code == 201, response.text
    created = response.json()
    room = rtc.Room()
    await room.connect(created["livekitUrl"], created["token"])
    return created, room


def _agent_identities(room: rtc.Room) -> set[str]:
    return {p.identity for p in room.remote_participants.values() if p.identity.startswith("vf-agent.")}


async def test_the_caller_leaving_ends_the_session_at_its_worker(stack, tenant, workers):
    gateway, _ = stack
    created, room = await _call(gateway, tenant)

    await _wait("the agent", lambda: _agent_identities(room))
    await room.disconnect()
    async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers()) as http:
        await _wait("the session to end after the caller left", lambda: _phase(http, created["sessionId"], "ended"),
                    timeout=CALLER_GONE_S)


async def _recovery_case(stack, tenant, kube, pods, break_worker, *, eval_mode: bool = False) -> float:
    """Start a call, break its worker with ``break_worker(pod name, ip, session id)``; the caller must see a
    different agent join, dispatched as the same session (room, eval mode). Returns the gap from breaking to the
    new agent's arrival, as the caller sees it."""
    gateway, lk = stack
    created, room = await _call(gateway, tenant, {"evalMode": True} if eval_mode else {})
    try:
        first = await _wait("the first agent", lambda: _agent_identities(room))
        first_pod = next(iter(first)).split(".", 2)[2]
        ip = worker_pods.wait_ready(kube, tenant.namespace, [first_pod])[first_pod]
        broken_at = time.monotonic()
        await break_worker(first_pod, ip, created["sessionId"])
        replaced = await _wait("a recovering agent from another worker", lambda: {
            i for i in _agent_identities(room) if not i.endswith("." + first_pod)}, timeout=30)
        gap = time.monotonic() - broken_at
        new_pod = next(iter(replaced)).split(".", 2)[2]
        new_ip = worker_pods.wait_ready(kube, tenant.namespace, [new_pod])[new_pod]
        dispatches = httpx.get(f"http://{new_ip}:8080/test/dispatches", headers=worker_pods.worker_headers(tenant.namespace)).json()
        mine = [d for d in dispatches if d["sessionId"] == created["sessionId"]]
        assert mine and mine[0]["recovery"] is True and mine[0]["room"] == created["room"]
        assert mine[0]["evalMode"] is eval_mode, mine[0]
        async with httpx.AsyncClient(base_url=gateway.url, headers=tenant.headers()) as http:
            seen = (await http.get(f"/v1/sessions/{created['sessionId']}")).json()
        assert seen["phase"] == "active" and seen["recovered"] is True
        return gap
    finally:
        await room.disconnect()


async def test_a_deleted_worker_pod_is_replaced_mid_call(stack, tenant, workers, kube, pods):
    async def delete_pod(pod, _ip, _sid):
        worker_pods.delete(kube, tenant.namespace, pod, grace_seconds=0)

    gap = await _recovery_case(stack, tenant, kube, pods, delete_pod)
    print(f"pod deleted -> new agent in the room: {gap * 1000:.0f} ms")
    _add_workers(kube, pods, tenant, 1)  # keep the pool at three for the next cases


async def test_a_crashed_worker_process_is_replaced_mid_call(stack, tenant, workers, kube, pods):
    async def crash(_pod, ip, _sid):
        httpx.post(f"http://{ip}:8080/test/crash", headers=worker_pods.worker_headers(tenant.namespace))

    gap = await _recovery_case(stack, tenant, kube, pods, crash)
    print(f"process crashed -> new agent in the room: {gap * 1000:.0f} ms")


async def test_an_agent_that_leaves_while_the_caller_stays_is_replaced(stack, tenant, workers, kube, pods):
    async def leave(_pod, ip, sid):
        answer = httpx.post(f"http://{ip}:8080/test/leave/{sid}", headers=worker_pods.worker_headers(tenant.namespace))
        assert answer.json()["status"] == "left"

    gap = await _recovery_case(stack, tenant, kube, pods, leave)
    print(f"agent left the room -> new agent in the room: {gap * 1000:.0f} ms")


async def test_an_eval_session_stays_in_eval_mode_when_its_worker_dies(stack, tenant, workers, kube, pods):
    """issue #10: the recovering worker must keep recording the eval run's transcript and tool calls."""
    async def crash(_pod, ip, _sid):
        httpx.post(f"http://{ip}:8080/test/crash", headers=worker_pods.worker_headers(tenant.namespace))

    gap = await _recovery_case(stack, tenant, kube, pods, crash, eval_mode=True)
    print(f"eval session: process crashed -> new agent in the room: {gap * 1000:.0f} ms")
