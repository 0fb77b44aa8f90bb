"""Cross-tenant access on every endpoint, and the operational endpoints, tried with a tenant's API key:

- tenant B, with its own valid key, asks for each of tenant A's resources (agents, sessions, eval results,
  secrets, webhook endpoints; also with A's agent ETag in If-Match) on every authenticated operation of the gateway's OpenAPI document (a new endpoint fails this test
  until it is covered): always 404, never 403 (which would confirm the name exists) and never A's data; B's
  writes land in B's own namespace and leave A's objects byte-for-byte unchanged;
- `GET /metrics` on the tenant API port: 404 (every tenant's and agent's name and traffic was there).
"""

from __future__ import annotations

import base64
import secrets
import time

import httpx
import pytest
from kubernetes import client

from tests.security import secret_ledger
from tests.security.hostile_platform import REGION, offline_spec

pytestmark = [pytest.mark.world, pytest.mark.timeout(400)]

AGENT, SECRET = "alpha-agent", "alpha-keys"


@pytest.fixture(scope="module")
def a_and_b(platform):
    a, b = platform.add_tenant("xa"), platform.add_tenant("xb")
    value = secret_ledger.record(f"alpha-{secrets.token_urlsafe(18)}", f"tenant secret value of {a.name}")
    with platform.api(a) as http:
        assert http.put(f"/v1/secrets/{SECRET}", json={"data": {"key": value}}).status_code == 201
        assert http.put(f"/v1/agents/{AGENT}", json=offline_spec(
            regions=[{"name": REGION, "minWorkers": 1, "maxWorkers": 1}],
            observability={"recordTranscripts": True})).status_code == 201
        platform.wait_ready_workers(a, AGENT, timeout=180)
        deadline = time.monotonic() + 60
        while (session := http.post(f"/v1/agents/{AGENT}/sessions", json={"evalMode": True})).status_code == 503:
            assert time.monotonic() < deadline, session.text
            time.sleep(0.5)
        assert session.status_code == 201, session.text
        # A webhook endpoint of A's (127.0.0.1 is in the test platform's outbound allow-list; nothing listens).
        hook = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a-hook", "events": ["agent.degraded"]})
        assert hook.status_code == 201, hook.text
    return a, b, {**session.json(), "webhookId": hook.json()["id"]}, value


def _a_objects(platform, a) -> dict:
    core = client.CoreV1Api(platform.api_client)
    agent = platform.agent_object(a.namespace, AGENT)
    secret = core.read_namespaced_secret(SECRET, a.namespace)
    return {"agent": (agent["metadata"]["generation"], agent["spec"]),  # the operator's status changes go on
            "secret": (secret.metadata.resource_version, secret.data)}


def _not_found(response: httpx.Response, *private: str) -> None:
    label = f"{response.request.method} {response.request.url.path} -> {response.status_code} {response.text[:200]}"
    assert response.status_code == 404, label
    assert response.json()["code"].endswith("not_found"), label
    for value in private:
        assert value not in response.text, label


def test_tenant_b_gets_404_for_every_resource_of_tenant_a_on_every_operation(platform, a_and_b):
    a, b, session, value = a_and_b
    sid, hook = session["sessionId"], session["webhookId"]
    before = _a_objects(platform, a)
    private = (a.name, a.namespace, value, session["room"])

    def own_listing(path: str):
        def attack(http: httpx.Client) -> None:
            response = http.get(path)
            assert response.status_code == 200, response.text
            assert response.json()["items"] == []  # B has none of its own yet, and sees none of A's
            for text in (*private, AGENT, SECRET):
                assert text not in response.text

        return attack

    def put_lands_in_own_namespace(path: str, body: dict, namespace_check):
        def attack(http: httpx.Client) -> None:
            response = http.put(path, json=body)
            assert response.status_code == 201, response.text  # a new object of B's, not A's
            namespace_check()
            assert http.delete(path).status_code == 204

        return attack

    def own_usage(http: httpx.Client) -> None:  # B's own usage: none of A's agents or figures
        response = http.get("/v1/usage")
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
        for text in (*private, AGENT, SECRET):
            assert text not in response.text

    def webhook_lands_in_own_list(http: httpx.Client) -> None:
        response = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/b-hook", "events": ["agent.ready"]})
        assert response.status_code == 201, response.text
        mine = response.json()["id"]
        assert [item["id"] for item in http.get("/v1/webhooks").json()["items"]] == [mine]
        assert http.delete(f"/v1/webhooks/{mine}").status_code == 204

    core = client.CoreV1Api(platform.api_client)
    attacks = {
        ("GET", "/v1/sessions"): own_listing("/v1/sessions"),
        ("GET", "/v1/usage"): own_usage,
        ("GET", "/v1/webhooks"): own_listing("/v1/webhooks"),
        ("POST", "/v1/webhooks"): webhook_lands_in_own_list,
        ("GET", "/v1/webhooks/{endpoint_id}"): lambda http: _not_found(http.get(f"/v1/webhooks/{hook}"), *private),
        ("DELETE", "/v1/webhooks/{endpoint_id}"): lambda http: _not_found(http.delete(f"/v1/webhooks/{hook}"),
                                                                          *private),
        ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): lambda http: _not_found(
            http.get(f"/v1/webhooks/{hook}/deliveries"), *private),
        # With A's ETag in If-Match: still B's own namespace, where no such agent is (404, no precondition judged).
        ("PATCH", "/v1/agents/{agent}", "If-Match"): lambda http: _not_found(
            http.patch(f"/v1/agents/{AGENT}", json={"greeting": "pwned"}, headers={"If-Match": a_etag}), *private),
        ("DELETE", "/v1/agents/{agent}", "If-Match"): lambda http: _not_found(
            http.delete(f"/v1/agents/{AGENT}", headers={"If-Match": a_etag}), *private),
        ("GET", "/v1/agents"): own_listing("/v1/agents"),
        ("GET", "/v1/agents/{agent}"): lambda http: _not_found(http.get(f"/v1/agents/{AGENT}"), *private),
        ("PATCH", "/v1/agents/{agent}"): lambda http: _not_found(
            http.patch(f"/v1/agents/{AGENT}", json={"greeting": "pwned"}), *private),
        ("DELETE", "/v1/agents/{agent}"): lambda http: _not_found(http.delete(f"/v1/agents/{AGENT}"), *private),
        ("POST", "/v1/agents/{agent}/sessions"): lambda http: _not_found(
            http.post(f"/v1/agents/{AGENT}/sessions", json={}), *private),
        ("GET", "/v1/sessions/{session_id}"): lambda http: _not_found(http.get(f"/v1/sessions/{sid}"), *private),
        ("DELETE", "/v1/sessions/{session_id}"): lambda http: _not_found(http.delete(f"/v1/sessions/{sid}"), *private),
        ("GET", "/v1/sessions/{session_id}/eval"): lambda http: _not_found(http.get(f"/v1/sessions/{sid}/eval"),
                                                                           *private),
        ("GET", "/v1/secrets"): own_listing("/v1/secrets"),
        ("GET", "/v1/secrets/{name}"): lambda http: _not_found(http.get(f"/v1/secrets/{SECRET}"), *private),
        ("DELETE", "/v1/secrets/{name}"): lambda http: _not_found(http.delete(f"/v1/secrets/{SECRET}"), *private),
        ("PUT", "/v1/agents/{agent}"): put_lands_in_own_namespace(
            f"/v1/agents/{AGENT}", offline_spec(greeting="mine"),
            lambda: platform.agent_object(b.namespace, AGENT)["spec"]["greeting"] == "mine" or pytest.fail("where?")),
        ("PUT", "/v1/secrets/{name}"): put_lands_in_own_namespace(
            f"/v1/secrets/{SECRET}", {"data": {"key": "b-own-value-0123456789"}},
            lambda: core.read_namespaced_secret(SECRET, b.namespace).data["key"]
            == base64.b64encode(b"b-own-value-0123456789").decode() or pytest.fail("where?")),
    }
    schema = httpx.get(f"{platform.gateway.url}/openapi.json").json()
    secured = {(method.upper(), path) for path, operations in schema["paths"].items()
               for method, operation in operations.items() if operation.get("security")}
    assert secured <= set(attacks), f"operations this test does not cover yet: {sorted(secured - set(attacks))}"

    with platform.api(a) as http:
        a_etag = http.get(f"/v1/agents/{AGENT}").headers["ETag"]
        a_hooks = http.get("/v1/webhooks").json()["items"]
    with platform.api(b) as http:
        for (method, path, *_), attack in attacks.items():
            if (method, path) in secured:
                attack(http)
    print(f"tenant B tried {len(secured)} operations (and {len(attacks) - len(secured)} more ways) on tenant A's agent,"
          " session, eval record, secret and webhook endpoint")

    assert _a_objects(platform, a) == before, "tenant A's objects changed"
    with platform.api(a) as http:
        assert http.get(f"/v1/sessions/{sid}").json()["phase"] in ("starting", "active")
        assert http.get("/v1/webhooks").json()["items"] == a_hooks and [h["id"] for h in a_hooks] == [hook]
        assert http.get(f"/v1/secrets/{SECRET}").status_code == 200


def test_a_session_id_of_a_is_unknown_to_b_even_when_b_has_an_agent_of_the_same_name(platform, a_and_b):
    a, b, session, _ = a_and_b
    with platform.api(b) as http:
        assert http.put(f"/v1/agents/{AGENT}", json=offline_spec()).status_code == 201
        _not_found(http.get(f"/v1/sessions/{session['sessionId']}"))
        _not_found(http.get(f"/v1/sessions/{session['sessionId']}/eval"))
        assert http.delete(f"/v1/agents/{AGENT}").status_code == 204


@pytest.mark.parametrize("who", ["no key", "tenant key"])
def test_metrics_are_not_on_the_tenant_api_port(platform, a_and_b, who):
    a, _, _, _ = a_and_b
    with platform.api(a if who == "tenant key" else None) as http:
        response = http.get("/metrics")
    assert response.status_code == 404, response.text[:300]
    assert a.name not in response.text and "voxfleet_" not in response.text
