"""Per-tenant fairness in the gateway's connections to workers: one tenant's hung workers must not take the
connections or request slots the other tenants need.

- In process: the gateway's WorkerClient (real aiohttp pool) against two real HTTP servers on their own loopback
  addresses, one hanging every call; the other tenant's call is timed with and without the per-tenant share
  (the "without" run shows what the share prevents, so the test can tell).
- End to end: a real gateway, one tenant's stand-in workers hanging every call while a flood of its session
  requests is in flight, and another tenant's sessions created meanwhile at their quiet latency.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env, start_gateway
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from voxfleet.api.wire import DispatchRequest, LoadReport
from voxfleet.gateway.worker_call_shares import TenantCallShares
from voxfleet.gateway.worker_client import WorkerClient
from voxfleet.world import processes

HUNG_IP, FAST_IP = "127.0.0.2", "127.0.0.3"


async def _hang(_: Request) -> JSONResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _load(_: Request) -> JSONResponse:
    report = LoadReport(worker="w", tenant="fast", agent="a", region="r", capacity=4, active=0, free=4, ready=True,
                        draining=False)
    return JSONResponse(report.to_wire())


async def _serve(ip: str, port: int, endpoint) -> tuple[uvicorn.Server, asyncio.Task]:
    routes = [Route("/v1/load", endpoint), Route("/v1/dispatch", endpoint, methods=["POST"])]
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host=ip, port=port,
                                           log_level="critical", lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task


async def _other_tenants_wait_ms(port: int, shares: TenantCallShares | None) -> tuple[float, bool]:
    """40 calls to the hung tenant's worker in flight on a pool of 8, then one call to the other tenant's."""
    namespaces = {HUNG_IP: "tenant-hung", FAST_IP: "tenant-fast"}
    client = WorkerClient("root-token", port, timeout=1.5, namespace_at=namespaces.get, max_connections=8,
                          shares=shares)
    try:
        hung = [asyncio.create_task(client.load(HUNG_IP)) for _ in range(40)]
        await asyncio.sleep(0.2)  # they hold their connections now
        started = time.perf_counter()
        report = await client.load(FAST_IP)
        waited = (time.perf_counter() - started) * 1000
        assert all(answer is None for answer in await asyncio.gather(*hung))  # timed out, every one
        return waited, report is not None
    finally:
        await client.aclose()


async def test_a_hung_tenant_holds_only_its_share_of_the_connection_pool():
    port = processes.free_port()
    hung_server, hung_task = await _serve(HUNG_IP, port, _hang)
    fast_server, fast_task = await _serve(FAST_IP, port, _load)
    try:
        unshared_ms, unshared_answered = await _other_tenants_wait_ms(port, None)
        shared_ms, shared_answered = await _other_tenants_wait_ms(port, TenantCallShares(per_tenant=4))
    finally:
        for server in (hung_server, fast_server):
            server.should_exit = True
        await asyncio.gather(hung_task, fast_task)
    outcome = {True: "answered", False: "failed (no connection within the 1 s connect timeout)"}
    print(f"\nother tenant's load call while 40 hung calls are in flight on a pool of 8: without per-tenant"
          f" shares {unshared_ms:.1f} ms, {outcome[unshared_answered]}; with a share of 4 {shared_ms:.1f} ms,"
          f" {outcome[shared_answered]}")
    assert not unshared_answered or unshared_ms > 900  # without shares it starved: what the shares prevent
    assert shared_answered and shared_ms < 200


async def test_a_dispatch_to_a_hung_worker_ends_at_the_clients_timeout():
    """aiohttp reads timeout=None as no timeout at all: dispatches used to wait for a hung worker until it died."""
    port = processes.free_port()
    server, task = await _serve(HUNG_IP, port, _hang)
    client = WorkerClient("root-token", port, timeout=0.5, namespace_at={HUNG_IP: "tenant-hung"}.get)
    request = DispatchRequest(session_id="session-0001", tenant="t", agent="a", region="r", room="t.a.s1",
                              livekit_url="ws://x", livekit_token="t", agent_identity="vf-agent.1.pod")
    try:
        started = time.perf_counter()
        outcome = await client.dispatch(HUNG_IP, request)
        waited = time.perf_counter() - started
    finally:
        await client.aclose()
        server.should_exit = True
        await task
    print(f"\ndispatch to a hung worker answered {outcome.answer} after {waited * 1000:.0f} ms (timeout 500 ms)")
    assert outcome.answer == "error" and waited < 1.5


# --- end to end ------------------------------------------------------------------------------------------------

SPEC = {"greeting": "Hi.", "regions": [{"name": "us-east", "minWorkers": 0}]}
FLOOD = 120  # the hung tenant's session requests in flight at once (each holds a dispatch for up to 1 s)


@pytest.fixture(scope="module")
def gateway(kube, platform_namespace, gateway_logs, livekit):
    process = start_gateway(kube, platform_namespace, gateway_logs, regions=livekit_regions(livekit),
                            extra_env=session_gateway_env(
                                VOXFLEET_RATE_LIMIT_PER_SECOND="100000", VOXFLEET_RATE_LIMIT_BURST="100000",
                                VOXFLEET_DISPATCH_TIMEOUT_SECONDS="1.0", VOXFLEET_DISPATCH_ATTEMPTS="2",
                                VOXFLEET_WORKER_MAX_CONNECTIONS="48", VOXFLEET_WORKER_CALLS_PER_TENANT="12",
                                VOXFLEET_LOG_LEVEL="info"))
    yield process
    process.stop()


def _tenant_with_workers(kube, pods, platform_namespace, gateway, *, prefix: str, hang: bool, count: int):
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east"], prefix=prefix,
                           quotas={"maxConcurrentSessions": 100000})
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        assert http.put("/v1/agents/desk", json=SPEC).status_code == 201
    manifests = [worker_pods.standin_pod(pods, tenant=tenant.name, agent="desk", region="us-east", slots=1000,
                                         call_seconds=0.5, hang=hang) for _ in range(count)]
    worker_pods.wait_ready(kube, tenant.namespace, worker_pods.create(kube, tenant.namespace, manifests), pods=pods)
    return tenant


@pytest.mark.world
async def test_another_tenants_sessions_keep_their_latency_while_one_tenants_workers_hang(
        kube, pods, platform_namespace, gateway):
    hung = _tenant_with_workers(kube, pods, platform_namespace, gateway, prefix="fair-hung", hang=True, count=4)
    fast = _tenant_with_workers(kube, pods, platform_namespace, gateway, prefix="fair-fast", hang=False, count=1)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=fast.headers(), timeout=30) as fast_http, \
                httpx.AsyncClient(base_url=gateway.url, headers=hung.headers(), timeout=30,
                                  limits=httpx.Limits(max_connections=FLOOD)) as hung_http:
            await _wait_until_served(fast_http)

            async def fast_sessions(count: int) -> list[float]:
                timings = []
                for _ in range(count):
                    started = time.perf_counter()
                    response = await fast_http.post("/v1/agents/desk/sessions", json={})
                    timings.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 201, response.text
                    await asyncio.sleep(0.05)
                return timings

            quiet = await fast_sessions(20)
            stop = asyncio.Event()
            hung_answers: list[tuple[int, float]] = []

            dropped: list[str] = []  # the load generator's own connection failures, counted, not fatal

            async def flood_one() -> None:
                while not stop.is_set():
                    started = time.perf_counter()
                    try:
                        response = await hung_http.post("/v1/agents/desk/sessions", json={})
                    except httpx.TransportError as error:  # once in a full parallel run on 2 cores (ReadError)
                        dropped.append(type(error).__name__)
                        continue
                    hung_answers.append((response.status_code, (time.perf_counter() - started) * 1000))

            flood = [asyncio.create_task(flood_one()) for _ in range(FLOOD)]
            await asyncio.sleep(1.5)  # the hung tenant's calls fill its share and queue behind it
            loaded = await fast_sessions(20)
            stop.set()
            await asyncio.gather(*flood)
    finally:
        for tenant in (hung, fast):
            delete_tenant(kube, tenant)
    quiet_p50, loaded_p50 = statistics.median(quiet), statistics.median(loaded)
    statuses = sorted({status for status, _ in hung_answers})
    print(f"\nother tenant's session create: quiet p50 {quiet_p50:.1f} ms max {max(quiet):.1f} ms; while {FLOOD}"
          f" requests of a tenant with hung workers were in flight: p50 {loaded_p50:.1f} ms max {max(loaded):.1f} ms"
          f"\nhung tenant: {len(hung_answers)} answers {statuses}, p50 {statistics.median(ms for _, ms in hung_answers):.0f}"
          f" ms (pool 48 connections, per-tenant share 12, dispatch timeout 1 s); connections dropped {dropped}")
    assert hung_answers and all(status in (503, 429) for status, _ in hung_answers)
    assert len(dropped) <= max(1, len(hung_answers) // 100), dropped
    assert loaded_p50 < max(3 * quiet_p50, quiet_p50 + 150)


async def _wait_until_served(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 20
    while (response := await http.post("/v1/agents/desk/sessions", json={})).status_code == 503:
        assert time.monotonic() < deadline, response.text
        await asyncio.sleep(0.2)
    assert response.status_code == 201, response.text
