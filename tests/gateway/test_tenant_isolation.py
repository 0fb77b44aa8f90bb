"""Tenant isolation over every authenticated operation of the API (taken from the gateway's own OpenAPI
document, so a new endpoint fails this test until it is covered): tenant A's key can neither see, change,
start nor end anything of tenant B's, and B's objects and sessions are unchanged afterwards."""

from __future__ import annotations

import time

import httpx
import pytest
from kubernetes import client

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, wait_until_served
from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.world

SPEC = {"greeting": "Hi.", "regions": [{"name": "us-east", "minWorkers": 0}]}


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit, module_database):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            database_url=module_database,  # history, usage and webhooks are attacked too
                            # tenants' webhook endpoints on 127.0.0.1 (nothing listens there)
                            extra_env=session_gateway_env(VOXFLEET_OUTBOUND_ALLOWED_CIDRS='["127.0.0.1/32"]'))
    yield process
    process.stop()


def _tenant_with_agent(kube, pods, platform_namespace, gateway, agent: str, prefix: str):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix=prefix)
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        wait_until_served(http)  # the new key and Tenant reach the gateway through its informers
        assert http.put(f"/v1/agents/{agent}", json=SPEC).status_code == 201
        assert http.put(f"/v1/secrets/{agent}-keys", json={"data": {"token": f"{prefix}-value"}}).status_code == 201
        names = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
            pods, tenant=tenant.name, agent=agent, region="us-east", slots=4)])
        ip = worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)[names[0]]
        deadline = time.monotonic() + 15
        while (started := http.post(f"/v1/agents/{agent}/sessions", json={})).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert started.status_code == 201, started.text
    return tenant, started.json(), ip


@pytest.fixture(scope="module")
def world_of_two(kube, pods, platform_namespace, gateway):
    a = _tenant_with_agent(kube, pods, platform_namespace, gateway, "alpha-agent", "iso-a")
    b = _tenant_with_agent(kube, pods, platform_namespace, gateway, "beta-agent", "iso-b")
    yield a, b
    for tenant, _, _ in (a, b):
        delete_tenant(kube, tenant)


def _b_agent_object(kube, namespace: str) -> dict:
    with kube.api_client() as api:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                         "beta-agent")


def test_tenant_a_reaches_nothing_of_tenant_b_over_any_operation(gateway, kube, world_of_two):
    (a, a_session, _), (b, b_session, b_worker_ip) = world_of_two
    b_before = _b_agent_object(kube, b.namespace)
    b_secret_before = _b_secret(kube, b.namespace)
    b_sid = b_session["sessionId"]
    with httpx.Client(base_url=gateway.url, headers=b.headers(), timeout=15) as http:
        hook = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/b-hook", "events": ["agent.degraded"]})
        assert hook.status_code == 201, hook.text
    b_hook = hook.json()["id"]
    attacks = {
        ("GET", "/v1/sessions"): lambda http: _history_shows_only_own(http, a_session, b, b_sid),
        ("GET", "/v1/usage"): lambda http: _usage_shows_nothing_of(http, b),
        ("GET", "/v1/webhooks"): lambda http: _webhooks_show_none_of(http, b_hook),
        ("POST", "/v1/webhooks"): lambda http: _webhook_lands_in_own_list(http, b_hook),
        ("GET", "/v1/webhooks/{endpoint_id}"): lambda http: _is_404(http.get(f"/v1/webhooks/{b_hook}"),
                                                                    "webhook_not_found"),
        ("DELETE", "/v1/webhooks/{endpoint_id}"): lambda http: _is_404(http.delete(f"/v1/webhooks/{b_hook}"),
                                                                       "webhook_not_found"),
        ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): lambda http: _is_404(
            http.get(f"/v1/webhooks/{b_hook}/deliveries"), "webhook_not_found"),
        ("GET", "/v1/agents"): lambda http: _list_shows_only_own(http, b),
        ("GET", "/v1/agents/{agent}"): lambda http: _is_404(http.get("/v1/agents/beta-agent"), "agent_not_found"),
        ("PATCH", "/v1/agents/{agent}"): lambda http: _is_404(
            http.patch("/v1/agents/beta-agent", json={"greeting": "pwned"}), "agent_not_found"),
        ("DELETE", "/v1/agents/{agent}"): lambda http: _is_404(http.delete("/v1/agents/beta-agent"),
                                                               "agent_not_found"),
        ("POST", "/v1/agents/{agent}/sessions"): lambda http: _is_404(
            http.post("/v1/agents/beta-agent/sessions", json={}), "agent_not_found"),
        ("GET", "/v1/sessions/{session_id}"): lambda http: _is_404(http.get(f"/v1/sessions/{b_sid}"),
                                                                   "session_not_found"),
        ("DELETE", "/v1/sessions/{session_id}"): lambda http: _is_404(http.delete(f"/v1/sessions/{b_sid}"),
                                                                      "session_not_found"),
        ("GET", "/v1/sessions/{session_id}/eval"): lambda http: _is_404(http.get(f"/v1/sessions/{b_sid}/eval"),
                                                                        "session_not_found"),
        ("GET", "/v1/secrets"): lambda http: _secret_list_shows_only_own(http, b),
        ("GET", "/v1/secrets/{name}"): lambda http: _is_404(http.get("/v1/secrets/beta-agent-keys"),
                                                            "secret_not_found"),
        ("DELETE", "/v1/secrets/{name}"): lambda http: _is_404(http.delete("/v1/secrets/beta-agent-keys"),
                                                               "secret_not_found"),
        # Last: PUT of the same name writes A's own agent (secret) in A's namespace, never B's.
        ("PUT", "/v1/agents/{agent}"): lambda http: _put_lands_in_own_namespace(http, kube, a),
        ("PUT", "/v1/secrets/{name}"): lambda http: _put_secret_lands_in_own_namespace(http, kube, a),
    }
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    secured = {(method.upper(), path) for path, operations in schema["paths"].items()
               for method, operation in operations.items() if operation.get("security")}
    assert secured == set(attacks), f"operations not covered by this test: {secured - set(attacks)}"

    with httpx.Client(base_url=gateway.url, headers=a.headers(), timeout=15) as http:
        for (method, path), attack in attacks.items():
            attack(http)

    b_after = _b_agent_object(kube, b.namespace)
    assert b_after["metadata"]["resourceVersion"] == b_before["metadata"]["resourceVersion"]
    assert b_after["spec"]["greeting"] == "Hi."
    b_secret_after = _b_secret(kube, b.namespace)
    assert b_secret_after.metadata.resource_version == b_secret_before.metadata.resource_version
    with httpx.Client(base_url=gateway.url, headers=b.headers(), timeout=15) as http:
        assert http.get(f"/v1/sessions/{b_sid}").json()["phase"] == "active"  # still running
        assert http.get("/v1/agents/beta-agent").status_code == 200
        assert [item["id"] for item in http.get("/v1/webhooks").json()["items"]] == [b_hook]
    dispatches = httpx.get(f"http://{b_worker_ip}:8080/test/dispatches",
                           headers=worker_pods.worker_headers(b.namespace)).json()
    assert {d["tenant"] for d in dispatches} == {b.name} and len(dispatches) == 1  # A dispatched nothing to B


def test_a_session_id_of_one_tenant_is_unknown_to_the_other_both_ways(gateway, world_of_two):
    (a, a_session, _), (b, b_session, _) = world_of_two
    with httpx.Client(base_url=gateway.url, headers=b.headers()) as http:
        assert http.get(f"/v1/sessions/{a_session['sessionId']}").status_code == 404
    with httpx.Client(base_url=gateway.url, headers=a.headers()) as http:
        assert http.get(f"/v1/sessions/{a_session['sessionId']}").status_code == 200


def _b_secret(kube, namespace: str):
    with kube.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_secret("beta-agent-keys", namespace)


def _secret_list_shows_only_own(http: httpx.Client, b) -> None:
    response = http.get("/v1/secrets")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["items"]] == ["alpha-agent-keys"]
    assert "beta-agent-keys" not in response.text and b.namespace not in response.text


def _put_secret_lands_in_own_namespace(http: httpx.Client, kube, a) -> None:
    response = http.put("/v1/secrets/beta-agent-keys", json={"data": {"token": "mine"}})
    assert response.status_code == 201, response.text
    with kube.api_client() as api:
        own = client.CoreV1Api(api).read_namespaced_secret("beta-agent-keys", a.namespace)
    assert set(own.data) == {"token"}
    assert http.delete("/v1/secrets/beta-agent-keys").status_code == 204


def _history_shows_only_own(http: httpx.Client, a_session: dict, b, b_sid: str) -> None:
    response = http.get("/v1/sessions")
    assert response.status_code == 200, response.text
    assert [item["sessionId"] for item in response.json()["items"]] == [a_session["sessionId"]]
    assert b_sid not in response.text and b.name not in response.text and "beta-agent" not in response.text


def _usage_shows_nothing_of(http: httpx.Client, b) -> None:
    response = http.get("/v1/usage")
    assert response.status_code == 200, response.text
    assert b.name not in response.text and "beta-agent" not in response.text


def _webhooks_show_none_of(http: httpx.Client, b_hook: str) -> None:
    response = http.get("/v1/webhooks")
    assert response.status_code == 200, response.text
    assert b_hook not in response.text


def _webhook_lands_in_own_list(http: httpx.Client, b_hook: str) -> None:
    created = http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/a-hook", "events": ["agent.ready"]})
    assert created.status_code == 201, created.text
    mine = created.json()["id"]
    assert mine != b_hook and [item["id"] for item in http.get("/v1/webhooks").json()["items"]] == [mine]
    assert http.delete(f"/v1/webhooks/{mine}").status_code == 204


def _is_404(response: httpx.Response, code: str) -> None:
    assert response.status_code == 404, (response.request.method, response.request.url, response.text)
    assert response.json()["code"] == code


def _list_shows_only_own(http: httpx.Client, b) -> None:
    response = http.get("/v1/agents")
    assert response.status_code == 200
    assert [item["name"] for item in response.json()["items"]] == ["alpha-agent"]
    assert "beta-agent" not in response.text and b.name not in response.text and b.namespace not in response.text


def _put_lands_in_own_namespace(http: httpx.Client, kube, a) -> None:
    response = http.put("/v1/agents/beta-agent", json={**SPEC, "greeting": "mine"})
    assert response.status_code == 201, response.text
    with kube.api_client() as api:
        own = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, a.namespace, PLURAL,
                                                                        "beta-agent")
    assert own["spec"]["greeting"] == "mine"
    assert http.delete("/v1/agents/beta-agent").status_code == 204
