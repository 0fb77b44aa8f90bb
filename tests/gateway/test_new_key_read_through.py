"""A key or Tenant made a moment ago, before the gateway's watches show it: served, within a budget.

Against the real apiserver: a real gateway process for "a new key works on its first request", and the key store
and tenant directory with their watches not started (so the watch can never be what served them) for the
read-through itself and its worst case, a spray of random well-formed key ids.
"""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from tests.gateway.conftest import start_gateway
from tests.gateway.tenant_setup import create_key, create_tenant, delete_tenant, key_headers
from voxfleet.gateway import api_keys
from voxfleet.gateway.key_store import KeyStore
from voxfleet.gateway.read_through import ReadThroughBudget
from voxfleet.gateway.tenant_directory import TenantDirectory
from voxfleet.kube.client import KubeClient

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def tenant(kube, platform_namespace):
    created = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
    yield created
    delete_tenant(kube, created)


def random_key() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    key_id = "".join(secrets.choice(alphabet) for _ in range(12))
    return f"vfk_{key_id}_{secrets.token_urlsafe(32)[:43]}"


def test_a_key_made_a_moment_ago_works_on_its_first_request(kube, platform_namespace, gateway_logs, tenant):
    gateway = start_gateway(kube, platform_namespace, gateway_logs)
    try:
        httpx.get(f"{gateway.url}/v1/agents", headers=tenant.headers()).raise_for_status()  # the tenant is loaded
        answers, took = [], []
        for _ in range(10):
            key = create_key(kube, platform_namespace, tenant.name)
            started = time.monotonic()
            answers.append(httpx.get(f"{gateway.url}/v1/agents", headers=key_headers(key)).status_code)
            took.append((time.monotonic() - started) * 1000)
        print(f"first requests with keys made just before: {answers}; p50 {sorted(took)[5]:.1f} ms,"
              f" max {max(took):.1f} ms")
        assert answers == [200] * 10
    finally:
        gateway.stop()


def test_the_read_through_finds_a_new_key_and_refuses_a_wrong_one(kube, platform_namespace, tenant):
    key = create_key(kube, platform_namespace, tenant.name)

    async def run():
        async with KubeClient.from_kubeconfig(str(kube.kubeconfig)) as client:
            store = KeyStore(client, platform_namespace)  # its watch never started
            found = await store.authenticate(key)
            key_id = api_keys.parse(key)[0]
            wrong = await store.authenticate(f"vfk_{key_id}_{'A' * 43}")  # the right id, not its secret
            return found, wrong, store.read_throughs
    found, wrong, counts = asyncio.run(run())
    print(f"read-throughs: {counts}")
    assert found is not None and found.tenant == tenant.name
    assert wrong is None
    assert counts["found"] == 2  # the id exists both times; only the hash comparison refused the second


def test_a_spray_of_random_key_ids_costs_the_apiserver_at_most_the_budget(kube, platform_namespace):
    budget = ReadThroughBudget(per_second=10, burst=20, miss_ttl_s=5)

    async def run():
        async with KubeClient.from_kubeconfig(str(kube.kubeconfig)) as client:
            store = KeyStore(client, platform_namespace, budget)
            started = time.monotonic()
            refused = [await store.authenticate(random_key()) for _ in range(500)]
            elapsed = time.monotonic() - started
            repeated = random_key()
            before = dict(store.read_throughs)
            await asyncio.sleep(1.0)  # the bucket refills a little
            for _ in range(100):
                await store.authenticate(repeated)
            return refused, elapsed, before, store.read_throughs
    refused, elapsed, before, after = asyncio.run(run())
    asked = before["found"] + before["missing"] + before["failed"]
    allowed = 20 + 10 * elapsed
    print(f"500 random key ids in {elapsed:.2f} s: {asked} apiserver GETs (budget {allowed:.0f}),"
          f" {before['over_budget']} refused without asking; one unknown id 100 times:"
          f" {after['missing'] - before['missing']} GET")
    assert all(r is None for r in refused)
    assert asked <= allowed
    assert after["missing"] - before["missing"] == 1  # a miss is remembered: retries of one bad key cost one GET


def test_a_tenant_made_a_moment_ago_is_loading_not_gone(kube, platform_namespace, tenant):
    async def run():
        async with KubeClient.from_kubeconfig(str(kube.kubeconfig)) as client:
            directory = TenantDirectory(client, platform_namespace=platform_namespace)  # its watch never started
            return (await directory.exists_unseen(tenant.name),
                    await directory.exists_unseen(f"no-such-tenant-{secrets.token_hex(4)}"))
    unseen, missing = asyncio.run(run())
    assert unseen is True and missing is False


def test_a_new_tenants_key_gets_200_or_a_retryable_503_never_401_or_403(kube, platform_namespace, gateway_logs):
    gateway = start_gateway(kube, platform_namespace, gateway_logs)
    created = []
    try:
        statuses = []
        for _ in range(5):
            fresh = create_tenant(kube, platform_namespace, allowed_regions=["us-east"])
            created.append(fresh)
            response = httpx.get(f"{gateway.url}/v1/agents", headers=fresh.headers())
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert response.json()["code"] == "tenant_loading" and response.headers["Retry-After"] == "1"
        print(f"first requests of brand-new tenants: {statuses}")
        assert set(statuses) <= {200, 503}
    finally:
        gateway.stop()
        for fresh in created:
            delete_tenant(kube, fresh)
