"""Trust only what the platform made (issue 16), tried as a hostile party would:

- a pod labelled like a worker of tenant A, running in a namespace no Tenant owns, is never dispatched a session
  and never sent a credential (the gateway used to trust any labelled pod anywhere);
- a Tenant claiming another tenant's namespace gets neither that tenant's agents through the API nor rights in it;
- Tenant names with dots are refused (room names `<tenant>.<agent>.<rest>` would become ambiguous);
- tenants whose names prefix each other ("acme", "acme-eu") with agents whose names prefix each other ("a",
  "a-b") never see each other's agents, sessions or rooms, and each session runs at its own tenant's worker.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
from kubernetes.client.exceptions import ApiException

from tests.gateway import worker_pods
from tests.gateway.tenant_setup import create_key
from tests.security import secret_ledger
from tests.security.hostile_platform import REGION, offline_spec
from tests.world.waiting import wait_for
from voxfleet.api import room_names

pytestmark = [pytest.mark.world, pytest.mark.timeout(600)]

ROGUE = Path(__file__).with_name("rogue_worker.py")
WORKER_PORT = 8080


def _rogue_pod(pods, tenant: str, agent: str) -> dict:
    name = f"rogue-{uuid.uuid4().hex[:6]}"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": worker_pods.worker_labels(tenant, agent, REGION)},
            "spec": {"containers": [{
                "name": "worker", "image": "voxfleet/voxfleet", "command": [sys.executable, str(ROGUE)],
                "env": [{"name": "VOXFLEET_BIND_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": WORKER_PORT}, "periodSeconds": 1}}],
                "terminationGracePeriodSeconds": 1, **pods.placement(REGION)}}


def _digests(values: dict[str, str]) -> dict[str, str]:
    return {hashlib.sha256(f"Bearer {value}".encode()).hexdigest(): what for value, what in values.items()}


def test_a_worker_looking_pod_outside_tenant_namespaces_gets_no_dispatch_and_no_credential(platform, kube, pods):
    victim = platform.add_tenant("lure")
    agent = "front"
    with platform.api(victim) as http:
        assert http.put(f"/v1/agents/{agent}", json=offline_spec()).status_code == 201  # no workers of its own
    rogue_namespace = kube.new_namespace("rogue")
    try:
        names = worker_pods.create(kube, rogue_namespace, [_rogue_pod(pods, victim.name, agent)])
        worker_pods.wait_ready(kube, rogue_namespace, names, pods=pods)
        time.sleep(4)  # several load-poll rounds of the gateway (1 s) and the operator
        with platform.api(victim) as http:
            outcomes = [http.post(f"/v1/agents/{agent}/sessions", json={}).status_code for _ in range(3)]
        time.sleep(1)
        lines = [json.loads(line) for line in pods.log(rogue_namespace, names[0], "worker").splitlines()
                 if line.startswith("{")]
    finally:
        kube.delete_namespace(rogue_namespace)
    credentials = _digests(platform.platform_credentials())
    sent = [credentials.get(line["authorization"], "an unknown credential") for line in lines
            if line["authorization"]]
    print(f"session creates: {outcomes}; requests the rogue pod received: {[(l['method'], l['path']) for l in lines]}")
    assert all(status == 503 for status in outcomes), outcomes  # no capacity: the rogue pod is no worker
    assert not [line for line in lines if line["path"].startswith("/v1/dispatch")], lines
    assert sent == [], f"the platform sent the rogue pod: {sent}"


def test_a_tenant_claiming_another_tenants_namespace_gets_nothing_of_it(platform):
    victim = platform.add_tenant("owner")
    with platform.api(victim) as http:
        assert http.put("/v1/agents/crown-jewels", json=offline_spec()).status_code == 201
    claimant = f"claim-{uuid.uuid4().hex[:6]}"
    platform.create_tenant_object(claimant, namespace=victim.namespace, groups=[f"{claimant}-devs"])
    key = secret_ledger.record(create_key(platform.kube, platform.platform_namespace, claimant),
                               f"API key of tenant {claimant}")

    def judged():
        found = platform.fleet.tenant(claimant) or {}
        conditions = {c["type"]: c for c in (found.get("status") or {}).get("conditions") or []}
        return conditions.get("Degraded", {}).get("status") == "True" and conditions or None

    conditions = wait_for(f"Tenant {claimant} judged", judged, timeout=30, interval=0.5)
    print(f"claimant's conditions: { {k: (v.get('status'), v.get('reason'), v.get('message')) for k, v in conditions.items()} }")
    assert conditions.get("Ready", {}).get("status") != "True"
    assert victim.namespace in conditions["Degraded"].get("message", "")
    time.sleep(2)  # the gateway's Tenant watch
    with httpx.Client(base_url=platform.gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        listing = http.get("/v1/agents")
        read = http.get("/v1/agents/crown-jewels")
        write = http.patch("/v1/agents/crown-jewels", json={"greeting": "mine now"})
    print(f"claimant's key: list {listing.status_code}, read {read.status_code}, patch {write.status_code}")
    assert "crown-jewels" not in listing.text  # (the refusal may name the namespace: the claimant wrote it)
    assert listing.status_code != 200 or listing.json()["items"] == [], listing.text
    assert read.status_code in (401, 403, 404, 503) and "crown-jewels" not in read.text.replace(
        "'crown-jewels'", "")  # a refusal may name what was asked for, never return it
    assert write.status_code in (401, 403, 404, 503)
    assert platform.agent_object(victim.namespace, "crown-jewels")["spec"]["greeting"] == "Hello."
    rights = platform.kubectl_as(f"{claimant}-devs", "auth", "can-i", "create", "voiceagents.voxfleet.dev",
                                 "-n", victim.namespace)
    assert rights.stdout.strip() == "no", rights.stdout + rights.stderr


@pytest.mark.parametrize("name", ["acme.eu", "a.b-c", "x.y.z"])
def test_tenant_names_with_dots_are_refused(platform, name):
    unique = f"{name}{uuid.uuid4().hex[:4]}"
    with pytest.raises(ApiException) as refused:
        platform.create_tenant_object(unique)
    body = refused.value.body if isinstance(refused.value.body, str) else str(refused.value.body)
    print(f"{unique}: {refused.value.status} {body[:300]}")
    assert refused.value.status == 422, body
    assert "metadata.name" in body or "name" in body


@pytest.fixture(scope="module")
def prefix_tenants(platform):
    """acme<id> and acme<id>-eu; agents "a" and "a-b" in both; a warm worker for acme/a-b and acme-eu/a."""
    base = f"acme{uuid.uuid4().hex[:4]}"
    acme, acme_eu = platform.add_tenant(name=base), platform.add_tenant(name=f"{base}-eu")
    served = {acme.name: "a-b", acme_eu.name: "a"}
    for tenant in (acme, acme_eu):
        with platform.api(tenant) as http:
            for agent in ("a", "a-b"):
                warm = 1 if served[tenant.name] == agent else 0
                assert http.put(f"/v1/agents/{agent}", json=offline_spec(
                    greeting=f"{tenant.name} {agent}",
                    regions=[{"name": REGION, "minWorkers": warm, "maxWorkers": 1}])).status_code == 201
    sessions = {}
    for tenant in (acme, acme_eu):
        ip = platform.wait_ready_workers(tenant, served[tenant.name], timeout=240)[0]
        with platform.api(tenant) as http:
            deadline = time.monotonic() + 60
            while (created := http.post(f"/v1/agents/{served[tenant.name]}/sessions", json={})).status_code == 503:
                assert time.monotonic() < deadline, created.text
                time.sleep(0.5)
            assert created.status_code == 201, created.text
        sessions[tenant.name] = (tenant, served[tenant.name], created.json(), ip)
    return sessions


def test_tenants_and_agents_whose_names_prefix_each_other_never_meet(platform, prefix_tenants):
    (acme, acme_agent, acme_session, acme_ip), (eu, eu_agent, eu_session, eu_ip) = prefix_tenants.values()
    for (tenant, agent, session, ip), (other, other_agent, other_session, other_ip) in (
            (prefix_tenants[acme.name], prefix_tenants[eu.name]), (prefix_tenants[eu.name], prefix_tenants[acme.name])):
        room = room_names.parse_room(session["room"])
        assert (room.tenant, room.agent) == (tenant.name, agent), session["room"]
        grant = jwt.decode(session["token"], options={"verify_signature": False})
        assert grant["video"]["room"] == session["room"]
        with platform.api(tenant) as http:
            listing = http.get("/v1/agents").json()["items"]
            assert sorted(item["spec"]["greeting"] for item in listing) == [f"{tenant.name} a", f"{tenant.name} a-b"]
            assert http.get(f"/v1/sessions/{other_session['sessionId']}").status_code == 404
            assert http.get(f"/v1/sessions/{other_session['sessionId']}/eval").status_code == 404
            assert http.get(f"/v1/sessions/{session['sessionId']}").status_code == 200
        # The session runs at its own tenant's worker and is unknown at the other's.
        own = httpx.get(f"http://{ip}:{WORKER_PORT}/v1/sessions/{session['sessionId']}", timeout=10,
                        headers={"Authorization": f"Bearer {platform.worker_token_of(tenant.namespace)}"})
        assert own.status_code == 200, own.text
        elsewhere = httpx.get(f"http://{other_ip}:{WORKER_PORT}/v1/sessions/{session['sessionId']}", timeout=10,
                              headers={"Authorization": f"Bearer {platform.worker_token_of(other.namespace)}"})
        assert elsewhere.status_code == 404, elsewhere.text
    print(f"rooms: {acme_session['room'].rsplit('.', 1)[0]}.*, {eu_session['room'].rsplit('.', 1)[0]}.*")
