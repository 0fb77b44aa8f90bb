"""One tenant's costly specs do not stall the gateway (issue 16, item 2), against a real `voxfleet gateway`.

While tenant B PUTs the worst spec within the limits in a loop (distinct each time: no cache helps), /healthz and
tenant A's requests keep their latency; issue 16's spec is refused in seconds naming its first pattern; a tool
schema pointing at a listener the test runs is refused at admission naming the keyword, and the listener hears
nothing; the largest valid spec fits the request body limit, and a bigger body gets 413.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import uuid

import httpx
import pytest

from tests.api.costly_specs import fresh_seed, issue_spec, spec_of_size, worst_accepted_spec
from tests.fakes.http_server import LocalHTTPServer, Reply
from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from voxfleet.api.voiceagent import MAX_SPEC_BYTES
from voxfleet.gateway.settings import GatewaySettings

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

REGION = "us-east"
BODY_LIMIT = GatewaySettings.model_fields["max_request_bytes"].default


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs):
    process = start_gateway(kube, platform_namespace, gateway_logs)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tenants(kube, platform_namespace):
    made = [create_tenant(kube, platform_namespace, allowed_regions=[REGION], quotas={"maxAgents": 5},
                          prefix=prefix) for prefix in ("quiet", "costly")]
    yield made
    for tenant in made:
        delete_tenant(kube, tenant)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def _latencies(http: httpx.Client, method: str, path: str, count: int, status: int = 200,
               headers: dict | None = None) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        answer = http.request(method, path, headers=headers, json={} if method == "POST" else None)
        took.append(time.perf_counter() - started)
        assert answer.status_code == status, answer.text
        time.sleep(0.005)
    return took


def test_healthz_and_other_tenants_keep_their_latency_while_worst_specs_are_checked(gateway, tenants):
    quiet_tenant, costly_tenant = tenants
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        # Tenant A's request: session create for an agent it does not have, answered from the gateway's own
        # caches (key, agent directory) with no apiserver call, so the figure is the gateway's, not the
        # apiserver's (which B's writes do load). bench/tenant_isolation_bench.py measures real session creates.
        a_create = ("POST", "/v1/agents/absent/sessions", 120, 404, quiet_tenant.headers())
        quiet_health = _latencies(http, "GET", "/healthz", 200)
        quiet_create = _latencies(http, *a_create)

        puts: list[tuple[int, float]] = []
        stop = threading.Event()

        def hostile() -> None:
            with httpx.Client(base_url=gateway.url, timeout=60, headers=costly_tenant.headers()) as own:
                index = 0
                while not stop.is_set():
                    spec = worst_accepted_spec(fresh_seed())  # distinct every time: no cache helps
                    started = time.perf_counter()
                    answer = own.put(f"/v1/agents/costly-{index % 3}", json=spec)
                    puts.append((answer.status_code, time.perf_counter() - started))
                    index += 1

        thread = threading.Thread(target=hostile, daemon=True)
        thread.start()
        try:
            time.sleep(0.3)
            busy_health = _latencies(http, "GET", "/healthz", 200)
            busy_create = _latencies(http, *a_create)
        finally:
            stop.set()
            thread.join(60)
    put_seconds = [seconds for _, seconds in puts]
    print(f"\n/healthz quiet p50 {_p(quiet_health, 50):.1f} ms p99 {_p(quiet_health, 99):.1f} ms;"
          f" during costly PUTs p50 {_p(busy_health, 50):.1f} ms p99 {_p(busy_health, 99):.1f} ms")
    print(f"tenant A's session create (404, no apiserver) quiet p50 {_p(quiet_create, 50):.1f} ms p99"
          f" {_p(quiet_create, 99):.1f} ms; during p50 {_p(busy_create, 50):.1f} ms p99 {_p(busy_create, 99):.1f} ms")
    print(f"tenant B's worst-case PUTs: {len(puts)}, statuses {sorted({s for s, _ in puts})}, median"
          f" {statistics.median(put_seconds) * 1000:.0f} ms each")
    assert puts and all(status in (200, 201) for status, _ in puts), puts
    # Issue 16 saw /healthz answer after 82 s; with the checks on the loop each PUT would stall it ~0.1 s. Judged
    # with room for a 2-core machine shared with other work (B's writes load the apiserver on the same cores;
    # the bench's control phase shows any write costs about as much). Tenant A's request does more (key check,
    # rate limit), so its room is wider.
    assert _p(busy_health, 99) < 3 * _p(quiet_health, 99) + 30
    assert _p(busy_create, 99) < 5 * _p(quiet_create, 99) + 100


def test_the_issues_spec_is_refused_in_seconds_naming_its_first_pattern(gateway, tenants):
    _, costly_tenant = tenants
    started = time.perf_counter()
    answer = httpx.put(f"{gateway.url}/v1/agents/issue16", json=issue_spec(uuid.uuid4().hex[:8]),
                       headers=costly_tenant.headers(), timeout=60)
    took = time.perf_counter() - started
    print(f"\nissue 16's spec: {answer.status_code} in {took * 1000:.0f} ms (the issue: accepted after 4 min 22 s)")
    assert answer.status_code == 422, answer.text
    detail = answer.json()["details"][0]
    assert detail["field"] == "intents[0].patterns[0]" and "KiB of RE2 memory" in detail["message"]
    assert took < 10


def test_a_remote_ref_in_a_tool_schema_is_refused_at_admission_and_nothing_is_fetched(gateway, tenants):
    _, tenant = tenants
    with LocalHTTPServer(lambda request: Reply(body={"type": "string"})) as listener:
        spec = {"regions": [{"name": REGION, "minWorkers": 0, "maxWorkers": 1}],
                "tools": [{"name": "lookup", "http": {"url": "https://tools.example.com/lookup"},
                           "parameters": {"type": "object",
                                          "properties": {"city": {"$ref": f"{listener.url}/x"}}}}]}
        answer = httpx.put(f"{gateway.url}/v1/agents/remote-ref", json=spec, headers=tenant.headers(), timeout=30)
        assert answer.status_code == 422, answer.text
        detail = answer.json()["details"][0]
        assert detail["field"] == "tools[0].parameters.properties.city.$ref"
        assert "inside this schema" in detail["message"]
        assert listener.requests == []


def test_the_largest_valid_spec_fits_the_body_limit_and_bigger_is_refused(gateway, tenants):
    _, tenant = tenants
    largest = spec_of_size(uuid.uuid4().hex[:8], MAX_SPEC_BYTES - 64)
    body = json.dumps(largest, separators=(",", ":")).encode()
    print(f"\nlargest valid spec {len(body)} bytes; spec limit {MAX_SPEC_BYTES}; body limit {BODY_LIMIT}")
    assert len(body) <= MAX_SPEC_BYTES < BODY_LIMIT
    headers = {**tenant.headers(), "Content-Type": "application/json"}
    answer = httpx.put(f"{gateway.url}/v1/agents/largest", content=body, headers=headers, timeout=60)
    assert answer.status_code in (200, 201), answer.text[:500]

    over_spec = json.dumps(spec_of_size(uuid.uuid4().hex[:8], MAX_SPEC_BYTES + 2000)).encode()
    assert len(over_spec) < BODY_LIMIT
    answer = httpx.put(f"{gateway.url}/v1/agents/too-big", content=over_spec, headers=headers, timeout=60)
    assert answer.status_code == 422, answer.text[:500]
    assert str(MAX_SPEC_BYTES) in answer.json()["details"][0]["message"]

    too_long = b'{"regions": [{"name": "us-east"}], "systemPrompt": "' + b"x" * BODY_LIMIT + b'"}'
    answer = httpx.put(f"{gateway.url}/v1/agents/too-long", content=too_long, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text[:500]
