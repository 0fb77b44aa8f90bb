"""The agents API against the real apiserver with the generated CRDs: server-side apply limited to what a
tenant may set, allowed regions and quotas from the Tenant, and 422s with field paths (from the gateway's
models, or from the apiserver's schema and CEL rules)."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from kubernetes import client

from tests.api.invalid_resources import INVALID_AGENTS, VALID_AGENT_SPEC
from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant, wait_until_served
from voxfleet.api.voiceagent import GROUP, PLURAL, VERSION
from voxfleet.gateway import agent_writes
from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import KubeApiError

pytestmark = pytest.mark.world

SPEC = {**copy.deepcopy(VALID_AGENT_SPEC), "regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 2}]}


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs):
    process = start_gateway(kube, platform_namespace, gateway_logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east", "eu-west"],
                            quotas={"maxAgents": 3, "maxWorkers": 4})
    yield created
    delete_tenant(kube, created)


@pytest.fixture
def api(gateway, tenant):
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=10) as http:
        wait_until_served(http)
        yield http


def _stored(kube, namespace: str, name: str) -> dict:
    with kube.api_client() as api_client:
        return client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                                                name)


def test_put_creates_then_replaces_and_get_shows_the_cluster_defaults(api, kube, tenant):
    created = api.put("/v1/agents/support", json=SPEC)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "support" and body["ready"] is False
    assert body["spec"]["greeting"] == "Hello!"
    assert body["spec"]["scaling"]["sessionsPerWorker"] == 4  # defaulted by the CRD schema
    assert body["status"]["regions"] == []

    stored = _stored(kube, tenant.namespace, "support")
    managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
    assert (agent_writes.FIELD_MANAGER, "Apply") in managers
    assert stored["metadata"]["labels"]["voxfleet.dev/tenant"] == tenant.name

    replaced = api.put("/v1/agents/support", json={**SPEC, "greeting": "Welcome back."})
    assert replaced.status_code == 200 and replaced.json()["spec"]["greeting"] == "Welcome back."
    assert replaced.json()["generation"] == body["generation"] + 1

    listed = api.get("/v1/agents").json()["items"]
    assert [a["name"] for a in listed] == ["support"]
    one = api.get("/v1/agents/support").json()
    assert one["spec"]["greeting"] == "Welcome back." and one["spec"]["regions"][0]["maxWorkers"] == 2


def test_get_reports_status_per_region_as_the_operator_writes_it(api, kube, tenant):
    assert api.put("/v1/agents/status-shown", json=SPEC).status_code == 201
    status = {"observedGeneration": 1, "regions": [{"name": "us-east", "desiredWorkers": 1, "readyWorkers": 1,
                                                    "activeSessions": 2, "freeSlots": 2}],
              "readyWorkers": 1, "activeSessions": 2, "freeSlots": 2,
              "conditions": [{"type": "Ready", "status": "True", "reason": "PoolsReady", "message": "",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    with kube.api_client() as api_client:  # what the operator does, as the operator
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
            GROUP, VERSION, tenant.namespace, PLURAL, "status-shown", {"status": status})
    shown = api.get("/v1/agents/status-shown").json()
    assert shown["ready"] is True
    assert shown["status"]["regions"] == [{"name": "us-east", "desiredWorkers": 1, "readyWorkers": 1,
                                           "activeSessions": 2, "freeSlots": 2}]
    assert api.delete("/v1/agents/status-shown").status_code == 204


def test_patch_merges_into_the_tenant_fields_and_keeps_the_platforms(api, kube, tenant):
    assert api.put("/v1/agents/patched", json={**SPEC, "systemPrompt": "Be brief."}).status_code == 201
    # The platform team (kubectl, another field manager) sets worker env; the tenant's writes must keep it.
    with kube.api_client() as api_client:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            GROUP, VERSION, tenant.namespace, PLURAL, "patched",
            {"spec": {"worker": {"env": [{"name": "REGION_HINT", "value": "x"}]}}})
    patched = api.patch("/v1/agents/patched", content=json.dumps({"greeting": "Hi there.", "systemPrompt": None}),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert patched.status_code == 200, patched.text
    spec = patched.json()["spec"]
    assert spec["greeting"] == "Hi there." and spec["systemPrompt"] == ""  # null removes: back to the default
    assert spec["tools"][0]["name"] == "lookup_order"  # untouched fields stay
    assert spec["worker"]["env"] == [{"name": "REGION_HINT", "value": "x"}]

    replaced = api.put("/v1/agents/patched", json=SPEC)
    assert replaced.json()["spec"]["worker"]["env"] == [{"name": "REGION_HINT", "value": "x"}]
    assert api.patch("/v1/agents/nope", json={"greeting": "x"}).status_code == 404


def test_platform_fields_are_refused(api):
    response = api.put("/v1/agents/imagey", json={**SPEC, "worker": {"image": "evil/miner:latest"}})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_request"
    assert [d["field"] for d in body["details"]] == ["worker"]
    assert "evil/miner" not in response.text  # the refused input is not echoed
    assert api.get("/v1/agents/imagey").status_code == 404
    patched = api.patch("/v1/agents/imagey", json={"worker": {"image": "evil/miner:latest"}})
    assert patched.status_code == 404


@pytest.mark.parametrize("case, spec, expected", INVALID_AGENTS, ids=[case for case, _, _ in INVALID_AGENTS])
def test_invalid_specs_get_422_naming_the_field(api, case, spec, expected):
    response = api.put(f"/v1/agents/bad-{case}"[:63], json=spec)
    assert response.status_code == 422, response.text
    body = response.json()
    fields = [d["field"] for d in body["details"]]
    expected_path = expected[0].removeprefix("spec.")
    if expected_path.startswith("worker"):  # not a tenant field at all
        assert fields == ["worker"], body
    else:
        # The reported path is the expected field or the object that holds it (a model-level rule).
        assert any(expected_path == f or expected_path.startswith(f + ".") or expected_path.startswith(f + "[")
                   for f in fields), (fields, expected_path)
        assert all(d["message"] for d in body["details"])


def test_cross_field_problems_come_back_with_the_apiservers_path(api):
    spec = {**SPEC, "intents": [{"name": "x", "keywords": ["a"], "toolCall": {"name": "refund"}}]}
    response = api.put("/v1/agents/cross", json=spec)
    assert response.status_code == 422
    details = response.json()["details"]
    assert details[0]["field"] == "intents" and "must name a tool declared" in details[0]["message"]


async def test_apiserver_refusals_map_to_422_with_field_paths(kube, tenant):
    """The mapping itself, fed a real refusal of the apiserver (a spec the gateway's models never send)."""
    kube_client = KubeClient.from_kubeconfig(kube.kubeconfig)
    try:
        bad = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent",
               "metadata": {"name": "raw", "namespace": tenant.namespace},
               "spec": {"regions": [{"name": "us-east", "minWorkers": 5, "maxWorkers": 2}],
                        "scaling": {"sessionsPerWorker": 0}}}
        with pytest.raises(KubeApiError) as refused:
            await kube_client.apply(bad, field_manager="t")
        mapped = agent_writes.apiserver_refusal(refused.value)
        assert mapped.status == 422 and mapped.code == "invalid_agent"
        fields = {d["field"] for d in mapped.details}
        assert {"regions[0].minWorkers", "scaling.sessionsPerWorker"} <= fields
    finally:
        await kube_client.aclose()


def test_regions_outside_the_tenants_allowed_set_are_forbidden(api):
    response = api.put("/v1/agents/far", json={**SPEC, "regions": [{"name": "ap-south", "minWorkers": 0}]})
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "region_not_allowed" and body["details"][0]["field"] == "regions[0].name"


def test_quotas_limit_agents_and_workers(api):
    too_big = api.put("/v1/agents/big", json={**SPEC, "regions": [{"name": "us-east", "maxWorkers": 9}]})
    assert too_big.status_code == 403 and too_big.json()["code"] == "quota_exceeded"
    floor = api.put("/v1/agents/floor", json={**SPEC, "regions": [{"name": "us-east", "minWorkers": 3,
                                                                    "maxWorkers": 4},
                                                                   {"name": "eu-west", "minWorkers": 2,
                                                                    "maxWorkers": 4}]})
    assert floor.status_code == 403 and "minWorkers add up to 5" in floor.json()["message"]

    names = {a["name"] for a in api.get("/v1/agents").json()["items"]}
    created = []
    for index in range(5):
        name = f"count-{index}"
        response = api.put(f"/v1/agents/{name}", json=SPEC)
        if response.status_code == 403:
            assert response.json()["code"] == "quota_exceeded"
            break
        assert response.status_code == 201
        created.append(name)
    assert len(names) + len(created) == 3  # maxAgents
    assert api.put(f"/v1/agents/{created[0]}", json=SPEC).status_code == 200  # updates still fine at the limit
    for name in created:
        assert api.delete(f"/v1/agents/{name}").status_code == 204


def test_delete_removes_the_agent_and_a_second_delete_is_404(api):
    assert api.put("/v1/agents/temporary", json=SPEC).status_code == 201
    assert api.delete("/v1/agents/temporary").status_code == 204
    assert api.get("/v1/agents/temporary").json()["code"] == "agent_not_found"
    second = api.delete("/v1/agents/temporary")
    assert second.status_code == 404 and second.json()["code"] == "agent_not_found"


@pytest.mark.parametrize("name", ["Upper", "with_underscore", "x" * 64, "-dash"])
def test_bad_agent_names_are_422(api, name):
    response = api.put(f"/v1/agents/{name}", json=SPEC)
    assert response.status_code == 422 and response.json()["details"][0]["field"] == "path.agent"


def test_oversized_bodies_are_refused_with_413(api):
    huge = {**SPEC, "systemPrompt": "x" * 300_000}
    response = api.put("/v1/agents/huge", json=huge)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    chunked = api.put("/v1/agents/huge", content=iter([json.dumps(huge).encode()]),
                      headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["code"] == "request_too_large"


def test_malformed_json_is_a_4xx_json_error(api):
    response = api.put("/v1/agents/broken", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("host", ["169.254.169.254", "2852039166", "[::ffff:a9fe:a9fe]", "10.0.0.7", "0x7f.1"])
def test_ip_literal_urls_in_denied_ranges_are_refused_at_admission_naming_the_field(api, host):
    spec = copy.deepcopy(SPEC)
    spec["tools"][0]["http"]["url"] = f"http://{host}/latest/meta-data/"
    response = api.put("/v1/agents/metadata-grab", json=spec)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "url_not_allowed"
    assert [d["field"] for d in body["details"]] == ["tools[0].http.url"]
    assert "refused" in body["details"][0]["message"]
    assert api.get("/v1/agents/metadata-grab").status_code == 404  # nothing was written
