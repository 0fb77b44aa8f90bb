"""The tenant secrets API against a real gateway and apiserver: write-only (names, keys and times come back, values
never, in no answer and no log line), only Secrets labelled as the tenant's are touched, bounds name the field,
agents may reference only the tenant's own secrets, and a secret in use is not deleted."""

from __future__ import annotations

import base64
import time

import httpx
import pytest
from kubernetes import client

from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from tests.security import secret_ledger
from voxfleet.api import labels
from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.world

MARKER = secret_ledger.record("sk-live-secret-MARKER-7d1e", "tenant secret value (secrets API tests)")


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs):
    process = start_gateway(kube, platform_namespace, gateway_logs,
                            extra_env={"VOXFLEET_RATE_LIMIT_PER_SECOND": "1000", "VOXFLEET_RATE_LIMIT_BURST": "1000"})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="sec")
    yield created
    delete_tenant(kube, created)


@pytest.fixture
def api(gateway, tenant):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        yield http


def _read_secret(kube, namespace: str, name: str):
    with kube.api_client() as api:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)


def _admin_secret(kube, namespace: str, name: str, data: dict[str, str]) -> None:
    """A Secret made by someone else than the secrets API (the operator's worker credential, an admin's)."""
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_secret(namespace, {
            "metadata": {"name": name}, "stringData": data})


def test_a_secret_is_written_read_replaced_and_deleted_and_its_values_never_come_back(api, kube, tenant, gateway):
    first, second, third = f"{MARKER}-1", f"{MARKER}-2", f"{MARKER}-3"
    created = api.put("/v1/secrets/openai", json={"data": {"api-key": first, "org": second}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "openai" and body["keys"] == ["api-key", "org"] and body["createdAt"]
    stored = _read_secret(kube, tenant.namespace, "openai")
    assert stored.metadata.labels[labels.TENANT_SECRET] == labels.TENANT_SECRET_VALUE
    assert stored.metadata.labels[labels.TENANT] == tenant.name
    assert base64.b64decode(stored.data["api-key"]).decode() == first

    listed = api.get("/v1/secrets")
    assert [(item["name"], item["keys"]) for item in listed.json()["items"]] == [("openai", ["api-key", "org"])]
    assert api.get("/v1/secrets/openai").json()["keys"] == ["api-key", "org"]

    time.sleep(1.1)  # updatedAt has a one-second resolution
    replaced = api.put("/v1/secrets/openai", json={"data": {"api-key": third}})
    assert replaced.status_code == 200 and replaced.json()["keys"] == ["api-key"]
    assert replaced.json()["updatedAt"] > replaced.json()["createdAt"]
    assert base64.b64decode(_read_secret(kube, tenant.namespace, "openai").data["api-key"]).decode() == third

    assert api.delete("/v1/secrets/openai").status_code == 204
    gone = api.get("/v1/secrets/openai")
    assert gone.status_code == 404 and gone.json()["code"] == "secret_not_found"
    for response in (created, listed, replaced, gone):
        assert MARKER not in response.text
    assert MARKER not in gateway.log()


def test_a_name_held_by_a_secret_that_is_not_the_tenants_is_409_and_left_alone(api, kube, tenant):
    _admin_secret(kube, tenant.namespace, "provider-keys", {"deepgram": "admin-value"})
    before = _read_secret(kube, tenant.namespace, "provider-keys")
    taken = api.put("/v1/secrets/provider-keys", json={"data": {"deepgram": "tenant-value"}})
    assert taken.status_code == 409 and taken.json()["code"] == "secret_name_taken", taken.text
    assert taken.json()["details"][0]["field"] == "name"
    assert api.get("/v1/secrets/provider-keys").status_code == 404  # not the tenant's: not readable either
    assert api.delete("/v1/secrets/provider-keys").status_code == 404
    assert "provider-keys" not in api.get("/v1/secrets").text
    after = _read_secret(kube, tenant.namespace, "provider-keys")
    assert after.metadata.resource_version == before.metadata.resource_version


@pytest.mark.parametrize("name, body, code, field", [
    ("voxfleet-worker-token", {"data": {"token": "x"}}, "invalid_secret_name", "name"),
    ("Upper_Case", {"data": {"k": "x"}}, "invalid_secret_name", "name"),
    ("many", {"data": {f"k{i}": "x" for i in range(65)}}, "invalid_request", "data"),
    ("large", {"data": {"k": "x" * (64 * 1024)}}, "secret_too_large", "data"),
    ("badkey", {"data": {"not a key": "x"}}, "invalid_request", "data"),
    ("empty", {"data": {}}, "invalid_request", "data"),
])
def test_names_keys_and_sizes_out_of_bounds_name_the_field(api, name, body, code, field):
    response = api.put(f"/v1/secrets/{name}", json=body)
    assert response.status_code == 422 and response.json()["code"] == code, response.text
    assert [d["field"] for d in response.json()["details"]][:1] == [field]
    assert api.get(f"/v1/secrets/{name}").status_code == 404  # nothing was written


def test_bad_bodies_never_echo_a_value_in_any_answer_or_log_line(api, gateway):
    bodies = [
        {"json": {"data": {"k": MARKER}, "unexpected": MARKER}},
        {"json": {"dta": {"k": MARKER}}},
        {"json": {"data": [MARKER]}},
        {"json": {"data": {"k": {"nested": MARKER}}}},
        {"json": {"data": {f"{MARKER} as a key": "v"}}},
        {"json": {"data": {"k": MARKER * 3000}}},  # over 64 KiB
        {"content": f'{{"data": {{"k": "{MARKER}"', "headers": {"Content-Type": "application/json"}},  # broken JSON
        {"content": MARKER, "headers": {"Content-Type": "text/plain"}},
    ]
    for request in bodies:
        response = api.put("/v1/secrets/marker", **request)
        assert response.status_code == 422, (request, response.text)
        assert MARKER not in response.text, (request, response.text)
    agent = api.put("/v1/agents/marker", json={"greeting": "Hi.", "regions": [{"name": "us-east"}],
                                               "tools": [{"name": "t", "description": MARKER}], "bogus": MARKER})
    assert agent.status_code == 422 and MARKER not in agent.text, agent.text
    assert MARKER not in gateway.log()


def _agent(header_ref: dict) -> dict:
    return {"greeting": "Hi.", "regions": [{"name": "us-east", "minWorkers": 0}],
            "tools": [{"name": "lookup", "description": "Look an order up.",
                       "parameters": {"type": "object", "properties": {}},
                       "http": {"url": "https://tools.example.com/lookup",
                                "headers": [{"name": "Authorization", "secretKeyRef": header_ref}]}}]}


def test_agents_may_reference_only_the_tenants_own_secrets_holding_the_key(api, kube, tenant):
    # The operator puts the namespace's worker credential here, unlabelled: the attack of issue 16.
    _admin_secret(kube, tenant.namespace, "voxfleet-worker-token", {"token": "platform-credential"})
    refused = api.put("/v1/agents/desk", json=_agent({"name": "voxfleet-worker-token", "key": "token"}))
    assert refused.status_code == 422 and refused.json()["code"] == "secret_not_allowed", refused.text
    detail = refused.json()["details"][0]
    assert detail["field"] == "tools[0].http.headers[0].secretKeyRef.name"
    assert "PUT /v1/secrets/voxfleet-worker-token" in detail["message"]
    provider = api.put("/v1/agents/desk", json={
        **_agent({"name": "tools-auth", "key": "bearer"}),
        "pipeline": {"llm": {"provider": "openai", "model": "gpt-4o-mini",
                             "secretRef": {"name": "provider-keys-admin", "key": "openai"}}}})
    assert provider.status_code == 422
    assert {d["field"] for d in provider.json()["details"]} == {
        "pipeline.llm.secretRef.name", "tools[0].http.headers[0].secretKeyRef.name"}

    assert api.put("/v1/secrets/tools-auth", json={"data": {"bearer": "Bearer t0k3n"}}).status_code == 201
    wrong_key = api.put("/v1/agents/desk", json=_agent({"name": "tools-auth", "key": "token"}))
    assert wrong_key.status_code == 422
    assert wrong_key.json()["details"][0]["field"] == "tools[0].http.headers[0].secretKeyRef.key"
    assert api.get("/v1/agents/desk").status_code == 404  # nothing written by the refusals

    assert api.put("/v1/agents/desk", json=_agent({"name": "tools-auth", "key": "bearer"})).status_code == 201
    patched = api.patch("/v1/agents/desk", json={"tools": _agent({"name": "voxfleet-worker-token",
                                                                   "key": "token"})["tools"]})
    assert patched.status_code == 422
    with kube.api_client() as kapi:
        stored = client.CustomObjectsApi(kapi).get_namespaced_custom_object(GROUP, VERSION, tenant.namespace, PLURAL,
                                                                            "desk")
    assert stored["spec"]["tools"][0]["http"]["headers"][0]["secretKeyRef"]["name"] == "tools-auth"


def test_a_secret_an_agent_references_is_not_deleted(api, kube, tenant):
    assert api.put("/v1/secrets/hooks", json={"data": {"bearer": "b"}}).status_code == 201
    assert api.put("/v1/agents/hooked", json=_agent({"name": "hooks", "key": "bearer"})).status_code == 201
    deadline = time.monotonic() + 10
    while (refused := api.delete("/v1/secrets/hooks")).status_code != 409:  # the gateway's watch sees the agent
        assert refused.status_code != 204, "deleted while an agent references it"
        assert time.monotonic() < deadline, refused.text
        time.sleep(0.1)
    assert refused.json()["code"] == "secret_in_use" and "hooked" in refused.json()["message"]
    assert refused.json()["details"] == [{"field": "name", "reason": "InUse", "message":
                                          "agent 'hooked' references it at tools[0].http.headers[0].secretKeyRef"}]
    assert _read_secret(kube, tenant.namespace, "hooks").data["bearer"]
    assert api.delete("/v1/agents/hooked").status_code == 204
    deadline = time.monotonic() + 10
    while (deleted := api.delete("/v1/secrets/hooks")).status_code == 409:
        assert time.monotonic() < deadline, deleted.text
        time.sleep(0.1)
    assert deleted.status_code == 204, deleted.text


def test_the_secrets_api_is_in_the_openapi_document_without_values(gateway):
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert {"put", "get", "delete"} <= set(schema["paths"]["/v1/secrets/{name}"])
    assert "get" in schema["paths"]["/v1/secrets"]
    view = schema["components"]["schemas"]["SecretView"]["properties"]
    assert set(view) == {"name", "keys", "createdAt", "updatedAt"}
    put = schema["paths"]["/v1/secrets/{name}"]["put"]
    assert {"409", "422"} <= set(put["responses"]) and put["security"]
