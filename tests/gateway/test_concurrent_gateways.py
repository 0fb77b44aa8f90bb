"""Three gateway processes allocating at once against limited slots: no slot is ever given twice and a tenant's
maxConcurrentSessions is never exceeded. Counted at the workers (the authorities on their slots), not taken
from the gateways' word."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant

pytestmark = pytest.mark.world

REQUESTS = 40


@pytest.fixture(scope="module")
def gateways(kube, platform_namespace, gateway_logs, livekit):
    started = [start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                             extra_env=session_gateway_env(VOXFLEET_RATE_LIMIT_BURST="1000"))
               for _ in range(3)]
    yield started
    for gateway in started:
        gateway.stop()


def _pool(kube, pods, platform_namespace, gateway, *, agent: str, workers: int, slots: int, quotas: dict):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], quotas=quotas, prefix="race")
    with httpx.Client(base_url=gateway.url, headers=tenant.headers()) as http:
        assert http.put(f"/v1/agents/{agent}", json={"regions": [{"name": "us-east", "minWorkers": 0}],
                                                     "scaling": {"sessionsPerWorker": slots}}).status_code == 201
    names = worker_pods.create(kube, tenant.namespace, [worker_pods.standin_pod(
        pods, tenant=tenant.name, agent=agent, region="us-east", slots=slots) for _ in range(workers)])
    ips = list(worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods).values())
    time.sleep(1.0)  # every gateway's Pod watch has seen them Ready by now
    return tenant, ips


async def _storm(gateways, tenant, agent: str, count: int) -> list[httpx.Response]:
    urls = itertools.cycle([g.url for g in gateways])
    async with httpx.AsyncClient(headers=tenant.headers(), timeout=30,
                                 limits=httpx.Limits(max_connections=count)) as http:
        return await asyncio.gather(*(http.post(f"{next(urls)}/v1/agents/{agent}/sessions", json={})
                                      for _ in range(count)))


def _active_at_workers(namespace: str, ips: list[str]) -> tuple[list[int], set[str]]:
    """Each worker's active count, and the session ids they hold active (from what they were dispatched)."""
    WORKER_HEADERS = worker_pods.worker_headers(namespace)
    counts, active_ids = [], set()
    for ip in ips:
        load = httpx.get(f"http://{ip}:8080/v1/load", headers=WORKER_HEADERS).json()
        counts.append(load["active"])
        for dispatch in httpx.get(f"http://{ip}:8080/test/dispatches", headers=WORKER_HEADERS).json():
            state = httpx.get(f"http://{ip}:8080/v1/sessions/{dispatch['sessionId']}", headers=WORKER_HEADERS)
            if state.json()["phase"] != "ended":
                active_ids.add(dispatch["sessionId"])
    return counts, active_ids


async def test_three_gateways_never_give_a_slot_twice(gateways, kube, pods, platform_namespace):
    tenant, ips = _pool(kube, pods, platform_namespace, gateways[0], agent="race", workers=4, slots=2,
                        quotas={"maxConcurrentSessions": 1000})
    try:
        responses = await _storm(gateways, tenant, "race", REQUESTS)
        granted = [r.json()["sessionId"] for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code != 201]
        counts, active_ids = _active_at_workers(tenant.namespace, ips)
        print(f"{REQUESTS} concurrent requests over 3 gateways, 8 slots: granted {len(granted)}, "
              f"refused {len(refused)} ({sorted({r.status_code for r in refused})}), workers hold {counts}")
        assert all(r.status_code == 503 and r.json()["code"] == "no_capacity" for r in refused)
        assert all(count <= 2 for count in counts)
        assert len(granted) == len(set(granted)) == 8  # every slot used, none twice
        assert set(granted) == active_ids  # every grant is a real claim, and nothing else holds a slot
    finally:
        delete_tenant(kube, tenant)


async def test_three_gateways_hold_the_tenants_concurrent_session_quota(gateways, kube, pods, platform_namespace):
    tenant, ips = _pool(kube, pods, platform_namespace, gateways[0], agent="quota", workers=4, slots=3,
                        quotas={"maxConcurrentSessions": 5})
    try:
        began = time.monotonic()
        responses = await _storm(gateways, tenant, "quota", REQUESTS)
        print(f"storm answered in {time.monotonic() - began:.1f} s")
        granted = {r.json()["sessionId"] for r in responses if r.status_code == 201}
        codes = sorted({(r.status_code, r.json()["code"]) for r in responses if r.status_code != 201})
        counts, active_ids = _active_at_workers(tenant.namespace, ips)
        print(f"{REQUESTS} concurrent requests over 3 gateways, quota 5, 12 slots: granted {len(granted)},"
              f" refusals {codes}, workers hold {counts}")
        assert len(granted) <= 5
        assert active_ids == granted  # refused claims were released at their workers
        assert all(code in {(429, "quota_exceeded"), (503, "no_capacity")} for code in codes)

        # Sequentially the tenant gets exactly its quota, from any gateway, and then 429.
        admitted = len(granted)
        for gateway in itertools.islice(itertools.cycle(gateways), 20):
            response = httpx.post(f"{gateway.url}/v1/agents/quota/sessions", json={}, headers=tenant.headers())
            if response.status_code == 429:
                break
            assert response.status_code == 201, response.text
            admitted += 1
        assert admitted == 5
        print(f"sequential fill done at {time.monotonic() - began:.1f} s")
        counts, active_ids = _active_at_workers(tenant.namespace, ips)
        assert sum(counts) == 5 and len(active_ids) == 5
    finally:
        delete_tenant(kube, tenant)
