"""Tenant API keys end to end: `voxfleet keys` against the real apiserver, a real gateway process checking them.

What must hold: keys are stored only as hashes; several keys work side by side (rotation); a revoked key stops
working at once on the gateway (its watch sees the Secret go); refusals are JSON that never echo the key; the
gateway's log never contains a key; a tenant over its rate gets 429 with Retry-After.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from kubernetes import client

from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import (create_key, create_tenant, delete_tenant, run_keys_cli)
from voxfleet.gateway import api_keys

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs):
    process = start_gateway(kube, platform_namespace, gateway_logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
    yield created
    delete_tenant(kube, created)


def secret_of(key: str) -> str:
    """The part after `vfk_<key id>_`; it may itself hold `_` (base64url), so not key.split("_")[2]."""
    return key.split("_", 2)[2]


def _all_secret_bytes(kube, namespace: str) -> bytes:
    with kube.api_client() as api:
        secrets = client.CoreV1Api(api).list_namespaced_secret(namespace).items
    blob = b""
    for secret in secrets:
        for value in (secret.data or {}).values():
            blob += base64.b64decode(value) + b"\n"
        blob += json.dumps(secret.metadata.annotations or {}).encode()
        blob += json.dumps(secret.metadata.labels or {}).encode()
    return blob


def test_keys_cli_prints_the_key_once_and_the_cluster_holds_only_its_hash(kube, platform_namespace, tenant):
    key = create_key(kube, platform_namespace, tenant.name, description="ci pipeline")
    tenant.keys.append(key)
    assert api_keys.parse(key) is not None, "the CLI printed something that is not a key"
    stored = _all_secret_bytes(kube, platform_namespace)
    assert key.encode() not in stored
    assert secret_of(key).encode() not in stored  # nor its secret part
    assert api_keys.digest(key).encode() in stored

    code, out, _ = run_keys_cli(kube.kubeconfig, platform_namespace, "list", "--tenant", tenant.name, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert {row["keyId"] for row in rows} == {api_keys.parse(k)[0] for k in tenant.keys}
    assert any(row["description"] == "ci pipeline" for row in rows)
    assert key not in out and tenant.key not in out


def test_keys_cli_refuses_an_unknown_tenant(kube, platform_namespace):
    code, out, err = run_keys_cli(kube.kubeconfig, platform_namespace, "create", "--tenant", "no-such-tenant-xyz")
    assert code == 1 and out == "" and "no Tenant 'no-such-tenant-xyz'" in err


def test_a_valid_key_authenticates(gateway, tenant):
    response = httpx.get(f"{gateway.url}/v1/agents", headers=tenant.headers())
    assert response.status_code == 200, response.text
    assert response.json() == {"items": []}


@pytest.mark.parametrize("header, code", [
    (None, "missing_api_key"),
    ("Bearer", "missing_api_key"),
    ("Basic dXNlcjpwYXNz", "missing_api_key"),
    ("Bearer not-a-key", "invalid_api_key"),
    ("Bearer vfk_aaaaaaaaaaaa_" + "A" * 43, "invalid_api_key"),
])
def test_missing_or_malformed_keys_get_401_with_a_reason(gateway, header, code):
    headers = {"Authorization": header} if header else {}
    response = httpx.get(f"{gateway.url}/v1/agents", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == code and body["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_tampered_key_is_refused_and_never_echoed(gateway, tenant):
    real = tenant.key
    tampered = real[:-1] + ("A" if real[-1] != "A" else "B")
    for method, path in (("GET", "/v1/agents"), ("PUT", "/v1/agents/x"), ("PATCH", "/v1/agents/x"),
                         ("DELETE", "/v1/agents/x"), ("POST", "/v1/agents/x/sessions"),
                         ("GET", "/v1/sessions/abcdefgh"), ("DELETE", "/v1/sessions/abcdefgh")):
        response = httpx.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {tampered}"},
                                 json={"regions": [{"name": "us-east"}]})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["code"] == "invalid_api_key"
        assert tampered not in response.text and real not in response.text
        assert secret_of(tampered) not in response.text


def test_several_keys_work_and_a_revoked_key_stops_at_once(kube, platform_namespace, gateway):
    rotating = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="rot")
    try:
        old = rotating.key
        new = create_key(kube, platform_namespace, rotating.name, description="rotated in")
        deadline = time.monotonic() + 10
        while httpx.get(f"{gateway.url}/v1/agents", headers=rotating.headers(new)).status_code != 200:
            assert time.monotonic() < deadline, "the new key never started working"
            time.sleep(0.02)
        assert httpx.get(f"{gateway.url}/v1/agents", headers=rotating.headers(old)).status_code == 200

        code, out, err = run_keys_cli(kube.kubeconfig, platform_namespace, "revoke", api_keys.parse(old)[0],
                                      "--tenant", rotating.name)
        revoked_at = time.monotonic()
        assert code == 0, err
        assert old not in out + err
        # The very next request after the CLI returns: the watch has (almost always) delivered the deletion by
        # now; allow the watch's own latency, but no cache TTL.
        statuses = []
        while True:
            status = httpx.get(f"{gateway.url}/v1/agents", headers=rotating.headers(old)).status_code
            statuses.append(status)
            if status == 401:
                break
            assert time.monotonic() - revoked_at < 1.0, f"revoked key still accepted: {statuses}"
        propagation = time.monotonic() - revoked_at
        print(f"revocation effective after {propagation * 1000:.1f} ms ({len(statuses)} request(s))")
        for _ in range(5):  # and it stays refused
            assert httpx.get(f"{gateway.url}/v1/agents", headers=rotating.headers(old)).status_code == 401
        assert httpx.get(f"{gateway.url}/v1/agents", headers=rotating.headers(new)).status_code == 200
    finally:
        delete_tenant(kube, rotating)


def test_revoke_refuses_another_tenants_key(kube, platform_namespace, tenant, gateway):
    other = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="oth")
    try:
        code, _, err = run_keys_cli(kube.kubeconfig, platform_namespace, "revoke", other.key, "--tenant", tenant.name)
        assert code == 1 and "does not belong" in err and other.key not in err
        assert httpx.get(f"{gateway.url}/v1/agents", headers=other.headers()).status_code == 200
    finally:
        delete_tenant(kube, other)


def test_a_key_of_a_deleted_tenant_gets_403(kube, platform_namespace, gateway):
    doomed = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix="gone")
    deadline = time.monotonic() + 10
    while httpx.get(f"{gateway.url}/v1/agents", headers=doomed.headers()).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    delete_tenant(kube, doomed)
    deadline = time.monotonic() + 10
    while (response := httpx.get(f"{gateway.url}/v1/agents", headers=doomed.headers())).status_code == 200:
        assert time.monotonic() < deadline, "a deleted tenant's key kept working"
        time.sleep(0.02)
    assert response.status_code == 403 and response.json()["code"] == "tenant_unavailable"


def test_rate_limit_answers_429_with_retry_after_and_cors_allows_configured_origins(
        kube, platform_namespace, gateway_logs, tenant):
    limited = start_gateway(kube, platform_namespace, gateway_logs, extra_env={
        "VOXFLEET_RATE_LIMIT_PER_SECOND": "0.1", "VOXFLEET_RATE_LIMIT_BURST": "3",
        "VOXFLEET_CORS_ALLOW_ORIGINS": json.dumps(["https://app.example.com"])})
    try:
        statuses = [httpx.get(f"{limited.url}/v1/agents", headers=tenant.headers()) for _ in range(6)]
        assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        assert refused[0].json()["code"] == "rate_limited" and int(refused[0].headers["retry-after"]) >= 1

        preflight = httpx.options(f"{limited.url}/v1/agents", headers={
            "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        stranger = httpx.options(f"{limited.url}/v1/agents", headers={
            "Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in stranger.headers
    finally:
        limited.stop()
    assert tenant.key not in limited.log()


def test_health_metrics_and_the_api_document_need_no_key(gateway):
    assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{gateway.url}/readyz").json()["status"] == "ready"
    metrics = gateway.metrics()
    assert "voxfleet_gateway_auth_failures_total" in metrics and "voxfleet_gateway_http_requests_total" in metrics
    schema = httpx.get(f"{gateway.url}/openapi.json").json()
    assert "/v1/agents/{agent}/sessions" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    unknown = httpx.get(f"{gateway.url}/nowhere")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_the_playground_is_served_from_its_directory(kube, platform_namespace, gateway_logs, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>voxfleet playground</title>")
    (tmp_path / "playground.js").write_text("export const ok = 1;")
    serving = start_gateway(kube, platform_namespace, gateway_logs,
                            extra_env={"VOXFLEET_PLAYGROUND_DIR": str(tmp_path)})
    try:
        page = httpx.get(f"{serving.url}/playground/")
        assert page.status_code == 200 and "voxfleet playground" in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert httpx.get(f"{serving.url}/playground/playground.js").text == "export const ok = 1;"
        assert httpx.get(f"{serving.url}/playground/%2e%2e/%2e%2e/etc/passwd").status_code == 404  # no traversal
    finally:
        serving.stop()


def test_no_key_ever_reaches_the_gateway_log(gateway, tenant):
    """Last in the module: every request above sent real, tampered and revoked keys through this gateway."""
    httpx.get(f"{gateway.url}/v1/agents?key={tenant.key}", headers=tenant.headers())  # even in a query string
    log = gateway.log()
    assert '"event"' in log, "the gateway logged nothing at all; this check would prove nothing"
    for key in tenant.keys:
        assert key not in log
        assert secret_of(key) not in log
