"""What the gateway trusts, against a real gateway and apiserver with stand-in workers:

- a pod labelled as a tenant's worker is one only in that Tenant's namespace: anywhere else (a namespace no Tenant
  owns, another tenant's namespace) it gets no dispatch and no request at all, while the same pod in the
  tenant's namespace does (the control that shows the test can tell);
- two Tenants claiming one namespace: only the owner's keys work (operator-confirmed first, else the oldest);
- /metrics is served on the operational port only; the tenant API port answers 404 there.
"""

from __future__ import annotations

import time

import httpx
import pytest
from kubernetes import client

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_key, create_tenant, delete_tenant
from voxfleet.api.tenant import PLURAL as TENANTS
from voxfleet.api.voiceagent import GROUP, VERSION

pytestmark = pytest.mark.world

SPEC = {"greeting": "Hi.", "regions": [{"name": "us-east", "minWorkers": 0}]}


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            extra_env=session_gateway_env())
    yield process
    process.stop()


def test_metrics_are_served_on_the_operational_port_only(gateway):
    on_api = httpx.get(f"{gateway.url}/metrics")
    assert on_api.status_code == 404 and on_api.json()["code"] == "not_found"
    on_operational = httpx.get(f"{gateway.operational_url}/metrics")
    assert on_operational.status_code == 200 and "voxfleet_gateway_http_requests_total" in on_operational.text
    assert httpx.get(f"{gateway.operational_url}/readyz").status_code == 200
    assert httpx.get(f"{gateway.operational_url}/v1/agents").status_code == 404  # no tenant API there
    assert "/metrics" not in httpx.get(f"{gateway.url}/openapi.json").json()["paths"]


def _dispatches(ip: str, namespace: str) -> list[dict]:
    return httpx.get(f"http://{ip}:8080/test/dispatches", headers=worker_pods.worker_headers(namespace),
                     timeout=5).json()


def _control_calls(ip: str, namespace: str) -> int:
    return httpx.get(f"http://{ip}:8080/test/calls", headers=worker_pods.worker_headers(namespace),
                     timeout=5).json()["controlCalls"]


def _start_session(http: httpx.Client, seconds: float) -> httpx.Response:
    """Asks for a session for `seconds` (the gateway's watch needs a moment for pods that just turned Ready)."""
    deadline = time.monotonic() + seconds
    while (response := http.post("/v1/agents/desk/sessions", json={})).status_code == 503 \
            and time.monotonic() < deadline:
        time.sleep(0.25)
    return response


def test_a_worker_looking_pod_outside_its_tenants_namespace_gets_nothing(kube, pods, platform_namespace, gateway):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="trust")
    other = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="trust-o")
    stray = kube.new_namespace("stray")  # no Tenant owns it
    try:
        with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
            assert http.put("/v1/agents/desk", json=SPEC).status_code == 201
            impostors = {}
            for namespace in (stray, other.namespace):  # labelled exactly as the tenant's workers are
                name = worker_pods.create(kube, namespace, [worker_pods.standin_pod(
                    pods, tenant=tenant.name, agent="desk", region="us-east", slots=4)])[0]
                impostors[namespace] = worker_pods.wait_ready(kube, namespace, [name], pods=pods)[name]
            refused = _start_session(http, seconds=6)  # the load poll runs every second meanwhile
            assert refused.status_code == 503 and refused.json()["code"] == "no_capacity", refused.text
            for namespace, ip in impostors.items():
                assert _dispatches(ip, namespace) == []
                assert _control_calls(ip, namespace) == 0, namespace  # not even a load poll with a token

            # The control: the same pod in the tenant's own namespace is a worker.
            name = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
                pods, tenant=tenant.name, agent="desk", region="us-east", slots=4)])[0]
            ip = worker_pods.wait_ready(kube, tenant.namespace, [name], pods=pods)[name]
            served = _start_session(http, seconds=15)
            assert served.status_code == 201, served.text
            assert [d["sessionId"] for d in _dispatches(ip, tenant.namespace)] == [served.json()["sessionId"]]
        assert all(_dispatches(ip, ns) == [] for ns, ip in impostors.items())
        assert "a pod labelled as a worker is not in its tenant's namespace" in gateway.log()
    finally:
        for created in (tenant, other):
            delete_tenant(kube, created)
        kube.delete_namespace(stray)


def _claim(kube, namespace: str, prefix: str) -> str:
    """A second Tenant naming an existing tenant's namespace (a platform admin's mistake or worse)."""
    name = f"{prefix}-{time.monotonic_ns() % 10**8:08d}"
    with kube.api_client() as api:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, TENANTS, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"namespace": namespace, "allowedRegions": ["us-east"]}})
    return name


def _set_status(kube, tenant: str, status: dict) -> None:
    with kube.api_client() as api:
        client.CustomObjectsApi(api).patch_cluster_custom_object_status(GROUP, VERSION, TENANTS, tenant,
                                                                        {"status": status})


def _answers(gateway, keys: dict[str, str]) -> dict[str, int]:
    return {who: httpx.get(f"{gateway.url}/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code
            for who, key in keys.items()}


def _eventually(gateway, keys: dict[str, str], expected: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while (seen := _answers(gateway, keys)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


def test_two_tenants_claiming_one_namespace_only_the_owner_gets_in(kube, platform_namespace, gateway):
    first = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="own")
    time.sleep(1.1)  # creationTimestamp has a one-second resolution
    second = _claim(kube, first.namespace, "claim")
    keys = {"first": first.key, "second": create_key(kube, platform_namespace, second)}
    try:
        # Neither confirmed by an operator: the older Tenant keeps its namespace.
        assert _eventually(gateway, keys, {"first": 200, "second": 403}) == {"first": 200, "second": 403}
        refused = httpx.get(f"{gateway.url}/v1/secrets", headers={"Authorization": f"Bearer {keys['second']}"})
        assert refused.status_code == 403 and "belongs to another Tenant" in refused.json()["message"]

        # The operator's word wins over age: it provisioned the namespace for the second and refused the first.
        taken = {"type": "Ready", "status": "False", "reason": "NamespaceTaken", "message": "taken",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
        _set_status(kube, first.name, {"namespace": first.namespace, "conditions": [taken]})
        _set_status(kube, second, {"namespace": first.namespace})
        assert _eventually(gateway, keys, {"first": 403, "second": 200}) == {"first": 403, "second": 200}
    finally:
        with kube.api_client() as api:
            client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, TENANTS, second)
        delete_tenant(kube, first)
