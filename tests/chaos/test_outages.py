"""Outages degrade, never cut: a region's LiveKit, the kube-apiserver and the operator each go away under a
running gateway, and callers can still start calls.

The shared world's servers are never stopped (other tests run beside them): a fault proxy
(voxfleet.world.fault_proxy) sits between this module's own gateway and the server, and the test breaks the proxy.
Workers are stand-ins (tests/gateway/standin_worker.py: the worker's control API, no pipeline), so what is judged
is the platform's answer (session creates, /readyz, metrics, Deployment sizes), not audio: no `realtime` mark.

- A region's LiveKit partitioned away: sessions go to the next region by latency (201 there), /readyz says which
  region is down and stays ready, voxfleet_gateway_livekit_up{region} is 0, ending a session there does not wait
  on the dead server; back when it answers again. Every region's LiveKit cut: 503 livekit_unavailable and /readyz
  503.
- kube-apiserver down for 30 s (and a 10 s partition): every session create succeeds from the gateway's caches,
  also while a worker it cannot see crash and restart; /readyz stays 200, and what changed in the cluster
  meanwhile (a new worker, a new API key) is seen after.
- The operator down (SIGKILL, 30 s here; the chaos benchmark runs the full minute): every session create succeeds,
  the Deployment keeps its size, and the restarted operator changes it only as far as the load asks, once.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from kubernetes import client

from tests.gateway import real_worker_platform, worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_key, create_tenant, delete_tenant, key_headers, wait_until_served
from tests.operator.fleet import Fleet
from tests.operator.operator_process import OperatorProcess
from voxfleet.world.fault_proxy import FaultProxy

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

AGENT = "frontdesk"
STANDIN = Path(worker_pods.__file__).with_name("standin_worker.py")


# --- shared helpers ---------------------------------------------------------------------------------------------

def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of an exposition (None when absent)."""
    for line in text.splitlines():
        found = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if found and all(pair in dict(re.findall(r'(\w+)="([^"]*)"', found.group(1) or "")).items()
                         for pair in labels.items()):
            return float(found.group(2))
    return None


def wait_until(what: str, check, timeout: float, interval: float = 0.1):
    """check() until truthy; returns (value, seconds waited)."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)


def readyz(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readyz", timeout=5)
    return response.status_code, response.json()


def start_session(http: httpx.Client, **body) -> httpx.Response:
    return http.post(f"/v1/agents/{AGENT}/sessions", json=body)


def first_session(http: httpx.Client, timeout: float = 20, **body) -> httpx.Response:
    """The gateway's Pod watch needs a moment to see workers that just turned Ready: 503 until then."""
    response, _ = wait_until("a first session", lambda: (r := start_session(http, **body)).status_code != 503 and r,
                             timeout, interval=0.2)
    return response


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    with real_worker_platform.platform_namespace(kube, "vfout") as name:
        yield name


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("outage-logs")


def standin_pool(kube, pods, tenant, regions: dict[str, int], slots: int = 4) -> dict[str, list[str]]:
    """Stand-in workers per region (region -> count), Ready; returns region -> pod names."""
    manifests = {region: [worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region=region, slots=slots)
                          for _ in range(count)] for region, count in regions.items()}
    names = worker_pods.create(kube, tenant.namespace, [m for ms in manifests.values() for m in ms])
    worker_pods.wait_ready(kube, tenant.namespace, names, pods=pods)
    return {region: [m["metadata"]["name"] for m in ms] for region, ms in manifests.items()}


def put_agent(gateway: GatewayProcess, tenant, regions: list[str]) -> None:
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=30) as http:
        wait_until_served(http)
        created = http.put(f"/v1/agents/{AGENT}", json={
            "greeting": "Hello!", "regions": [{"name": region, "minWorkers": 0} for region in regions]})
        assert created.status_code in (200, 201), created.text


# --- a region's LiveKit ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def livekit_stack(kube, platform_namespace, logs, livekit, pods):
    """A gateway whose us-east and eu-west LiveKits are each behind a fault proxy; one stand-in worker per region."""
    proxies = {region: FaultProxy.in_front_of(livekit[region].http_url, name=f"proxy-{region}").start()
               for region in ("us-east", "eu-west")}
    regions = livekit_regions(livekit)
    for region, proxy in proxies.items():
        regions[region] = {**regions[region], "url": proxy.url_for(livekit[region].url),
                           "apiUrl": proxy.url_for(livekit[region].http_url)}
    regions.pop("ap-south")
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=logs / "gateway-livekit.log", regions=regions,
                             extra_env=session_gateway_env()).start()
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east", "eu-west"])
    put_agent(gateway, tenant, ["us-east", "eu-west"])
    standin_pool(kube, pods, tenant, {"us-east": 1, "eu-west": 1}, slots=8)
    yield gateway, tenant, proxies, livekit
    for proxy in proxies.values():
        proxy.stop()
    gateway.stop()
    delete_tenant(kube, tenant)


def _livekit_state(gateway: GatewayProcess, region: str) -> str:
    return readyz(gateway.url)[1]["regions"][region]["livekit"]


def test_a_regions_livekit_down_sends_calls_to_the_next_region_and_readyz_says_so(livekit_stack):
    gateway, tenant, proxies, livekit = livekit_stack
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        before = first_session(http, callerRegion="us-east")
        assert before.status_code == 201 and before.json()["region"] == "us-east", before.text
        assert before.json()["livekitUrl"] == proxies["us-east"].url_for(livekit["us-east"].url)
        assert metric(gateway.metrics(), "voxfleet_gateway_livekit_up", region="us-east") == 1

        proxies["us-east"].blackhole()  # a partition: the probes hang to their timeout, nothing refuses
        _, detected = wait_until("us-east's LiveKit seen down", lambda: _livekit_state(gateway, "us-east") == "down",
                                 timeout=45)
        started = time.monotonic()
        ended = http.delete(f"/v1/sessions/{before.json()['sessionId']}")  # its room's LiveKit is unreachable
        delete_seconds = time.monotonic() - started
        assert ended.status_code == 204 and delete_seconds < 3, (ended.status_code, delete_seconds)
        status, body = readyz(gateway.url)
        assert status == 200 and body["status"] == "degraded", body  # one region works: still ready
        assert body["regions"]["eu-west"]["livekit"] == "up"
        exposition = gateway.metrics()
        assert metric(exposition, "voxfleet_gateway_livekit_up", region="us-east") == 0
        assert metric(exposition, "voxfleet_gateway_livekit_up", region="eu-west") == 1
        assert metric(exposition, "voxfleet_gateway_livekit_changes_total", region="us-east", to="down") == 1

        during = [start_session(http, callerRegion="us-east") for _ in range(5)]
        landed = [(r.status_code, r.json().get("region")) for r in during]
        assert landed == [(201, "eu-west")] * 5, [r.text for r in during]
        assert all(r.json()["livekitUrl"] == proxies["eu-west"].url_for(livekit["eu-west"].url) for r in during)
        preferred = start_session(http, region="us-east")  # a preference, not a demand: the next region takes it
        assert preferred.status_code == 201 and preferred.json()["region"] == "eu-west", preferred.text
        for created in during + [preferred]:
            http.delete(f"/v1/sessions/{created.json()['sessionId']}")

        proxies["us-east"].forward()
        _, recovered = wait_until("us-east's LiveKit seen up", lambda: _livekit_state(gateway, "us-east") == "up",
                                  timeout=30)
        after = start_session(http, callerRegion="us-east")
        assert after.status_code == 201 and after.json()["region"] == "us-east", after.text
        http.delete(f"/v1/sessions/{after.json()['sessionId']}")
        assert readyz(gateway.url)[1]["status"] == "ready"
    print(f"us-east LiveKit partitioned: seen down after {detected:.1f} s, {len(during)}/{len(during)} calls placed"
          f" in eu-west meanwhile, a us-east session ended in {delete_seconds:.2f} s; back up {recovered:.1f} s after"
          f" it answered again")


def test_every_regions_livekit_down_is_503_and_not_ready_until_one_answers(livekit_stack):
    gateway, tenant, proxies, _ = livekit_stack
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        try:
            for proxy in proxies.values():
                proxy.cut()
            wait_until("both LiveKits seen down", lambda: readyz(gateway.url)[0] == 503, timeout=30)
            status, body = readyz(gateway.url)
            assert body["code"] == "not_ready" and body["status"] == "no_livekit", body
            assert {region["livekit"] for region in body["regions"].values()} == {"down"}
            refused = start_session(http, callerRegion="us-east")
            assert refused.status_code == 503 and refused.json()["code"] == "livekit_unavailable", refused.text
            assert int(refused.headers["retry-after"]) >= 1
        finally:
            proxies["eu-west"].forward()
        _, back = wait_until("eu-west seen up", lambda: readyz(gateway.url)[0] == 200, timeout=30)
        placed = start_session(http, callerRegion="us-east")
        assert placed.status_code == 201 and placed.json()["region"] == "eu-west", placed.text
        http.delete(f"/v1/sessions/{placed.json()['sessionId']}")
        proxies["us-east"].forward()
        wait_until("us-east seen up", lambda: _livekit_state(gateway, "us-east") == "up", timeout=30)
    print(f"every LiveKit cut: 503 livekit_unavailable; ready again {back:.1f} s after one answered")


# --- the kube-apiserver --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def apiserver_stack(kube, world, platform_namespace, logs, livekit, pods):
    """A gateway that reaches the apiserver only through a fault proxy (its own kubeconfig); us-east workers."""
    proxy = FaultProxy.in_front_of(world.apiserver_url, name="proxy-apiserver").start()
    config = yaml.safe_load(Path(kube.kubeconfig).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = proxy.url_for(world.apiserver_url)
    proxied_kubeconfig = logs / "kubeconfig-through-proxy"
    proxied_kubeconfig.write_text(yaml.safe_dump(config))
    proxied_kubeconfig.chmod(0o600)
    gateway = GatewayProcess(kubeconfig=proxied_kubeconfig, platform_namespace=platform_namespace,
                             log_path=logs / "gateway-apiserver.log", regions=livekit_regions(livekit),
                             extra_env=session_gateway_env()).start()
    assert proxy.accepted > 0  # its watches really come through the proxy
    tenant = create_tenant(kube, platform_namespace, allowed_regions=["us-east", "eu-west"])
    put_agent(gateway, tenant, ["us-east", "eu-west"])
    workers = standin_pool(kube, pods, tenant, {"us-east": 2}, slots=4)
    yield gateway, tenant, proxy, workers
    proxy.stop()
    gateway.stop()
    delete_tenant(kube, tenant)


@pytest.mark.parametrize("fault,seconds", [("cut", 30), ("blackhole", 10)])
def test_sessions_are_placed_from_the_caches_while_the_apiserver_is_away_and_changes_are_seen_after(
        apiserver_stack, kube, pods, platform_namespace, fault, seconds):
    gateway, tenant, proxy, workers = apiserver_stack
    with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
        warm = first_session(http, callerRegion="us-east")
        assert warm.status_code == 201, warm.text
        http.delete(f"/v1/sessions/{warm.json()['sessionId']}")

        getattr(proxy, fault)()
        if fault == "cut":
            wait_until("the gateway's watches seen broken", lambda: not all(
                w["healthy"] for w in readyz(gateway.operational_url)[1]["watches"].values()), timeout=30)
            # A worker crashes (and restarts) where the gateway cannot see it: its dispatches fail over.
            crashed = worker_pods.wait_ready(kube, tenant.namespace, workers["us-east"][:1])
            httpx.post(f"http://{next(iter(crashed.values()))}:8080/test/crash",
                       headers=worker_pods.worker_headers(tenant.namespace), timeout=5)
        # Made while the gateway cannot hear: a worker in another region and a new API key.
        eu_worker = worker_pods.standin_pod(pods, tenant=tenant.name, agent=AGENT, region="eu-west", slots=4)
        worker_pods.create(kube, tenant.namespace, [eu_worker])
        new_key = create_key(kube, platform_namespace, tenant.name, description="made during the outage")
        results, readiness = [], []
        cut_until = time.monotonic() + seconds
        while time.monotonic() < cut_until:
            created = start_session(http, callerRegion="us-east")
            results.append(created.status_code)
            if created.status_code == 201:
                http.delete(f"/v1/sessions/{created.json()['sessionId']}")
            readiness.append(readyz(gateway.url)[0])
            time.sleep(0.5)
        degraded = readyz(gateway.operational_url)[1]
        proxy.forward()

        assert gateway.popen.poll() is None, f"the gateway died in the apiserver {fault}:\n{gateway.log()[-3000:]}"
        assert "is used by transport" not in gateway.log()  # uvloop's descriptor mix-up (see gateway/main.py)
        ok = results.count(201)
        assert ok == len(results), f"session creates during the apiserver {fault}: {results}"
        assert set(readiness) == {200}, readiness  # still in the load balancer's rotation
        if fault == "cut":
            assert degraded["status"] == "degraded", degraded
        worker_pods.wait_ready(kube, tenant.namespace, [eu_worker["metadata"]["name"]], pods=pods)
        healed = time.monotonic()

        def placed_in_europe() -> httpx.Response | None:
            created = start_session(http, callerRegion="eu-west")
            if created.status_code == 201 and created.json()["region"] == "eu-west":
                return created
            if created.status_code == 201:  # not seen yet: us-east took it (the next region by latency)
                http.delete(f"/v1/sessions/{created.json()['sessionId']}")
            return None

        in_europe, _ = wait_until("a session in the worker made during the outage", placed_in_europe, timeout=60,
                                  interval=0.25)
        seen_after = time.monotonic() - healed
        http.delete(f"/v1/sessions/{in_europe.json()['sessionId']}")
        wait_until("the key made during the outage", lambda: http.get(
            "/v1/agents", headers=key_headers(new_key)).status_code == 200, timeout=30)
        wait_until("every watch healthy again", lambda: all(
            w["healthy"] for w in readyz(gateway.operational_url)[1]["watches"].values()), timeout=30)
        worker_pods.delete(kube, tenant.namespace, eu_worker["metadata"]["name"], grace_seconds=0)
        if fault == "cut":  # the crash was real: its container restarted while the gateway could not see it
            with kube.api_client() as api:
                core = client.CoreV1Api(api)
                wait_until("the crashed worker's restart", lambda: core.read_namespaced_pod(
                    workers["us-east"][0], tenant.namespace).status.container_statuses[0].restart_count >= 1, 30)
    print(f"apiserver {fault} for {seconds} s{' (a worker crashed in it)' if fault == 'cut' else ''}: {ok}/{len(results)}"
          f" session creates succeeded, /readyz 200 throughout;"
          f" a worker made during it took a call {seen_after:.1f} s after the link healed")


# --- the operator ----------------------------------------------------------------------------------------------

OPERATOR_OUTAGE_SECONDS = 30  # the minute is run by bench/chaos_bench.py; the behaviour is the same
SESSIONS_PER_WORKER, BUFFER, MIN_WORKERS, MAX_WORKERS = 2, 1, 1, 4
CALLS_BEFORE = 2  # the pool grows above its minimum before the outage: a restart that forgot why would shrink it
OPERATOR_SPEC = {
    "greeting": "Hello!",
    "regions": [{"name": "us-east", "minWorkers": MIN_WORKERS, "maxWorkers": MAX_WORKERS}],
    # BufferOnly: the load's ask is then the plain buffer rule, whatever N+1 adds; a short delay so that a wrong
    # scale-down after the restart would show within the test.
    "scaling": {"sessionsPerWorker": SESSIONS_PER_WORKER, "bufferSessions": BUFFER, "scaleDownDelaySeconds": 5,
                "spareCapacity": "BufferOnly"},
}


def asked_by_load(active: int) -> int:
    return max(MIN_WORKERS, min(MAX_WORKERS, math.ceil((active + BUFFER) / SESSIONS_PER_WORKER)))


@pytest.fixture(scope="module")
def operator_stack(kube, platform_namespace, logs, livekit):
    """A gateway and an operator whose worker pods run the stand-in worker (the worker contract, no pipeline)."""
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=logs / "gateway-operator.log", regions=livekit_regions(livekit),
                             extra_env=session_gateway_env()).start()
    command = [sys.executable, str(STANDIN), "--host", "$(VOXFLEET_BIND_HOST)", "--port", "$(VOXFLEET_WORKER_PORT)",
               "--slots", str(SESSIONS_PER_WORKER), "--tenant", "standin", "--agent", AGENT,
               "--region", "$(VOXFLEET_REGION)", "--pod", "$(VOXFLEET_POD_NAME)", "--drain-seconds", "5"]
    shard = f"s{uuid.uuid4().hex[:8]}"
    operator = OperatorProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace, shard=shard,
                               log_path=logs / "operator.log",
                               extra_env={"VOXFLEET_WORKER_COMMAND": json.dumps(command)}).start()
    with kube.api_client() as api:
        fleet = Fleet(api, shard, platform_namespace)
        try:
            yield gateway, operator, fleet
        finally:
            fleet.delete_everything()
            operator.stop()
            gateway.stop()


def test_operator_down_sessions_go_on_pools_keep_their_size_and_it_converges_without_thrash(
        kube, platform_namespace, operator_stack):
    gateway, operator, fleet = operator_stack
    name, namespace = fleet.create_tenant("out", allowedRegions=["us-east"])
    fleet.wait_tenant_ready(name)
    headers = key_headers(create_key(kube, platform_namespace, name))
    fleet.create_agent(namespace, AGENT, OPERATOR_SPEC)
    fleet.wait_agent_ready(namespace, AGENT, timeout=90)
    pool_name = f"{AGENT}-us-east"

    def replicas() -> int:
        return fleet.deployment(namespace, pool_name).spec.replicas

    def ready_workers() -> int:
        return len(fleet.ready_pods(namespace, AGENT, "us-east"))

    wait_until("the pool at its minimum, Ready", lambda: ready_workers() == MIN_WORKERS, timeout=60)
    capacity_before = asked_by_load(CALLS_BEFORE)
    assert replicas() == asked_by_load(0) == MIN_WORKERS < capacity_before
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=15) as http:
        kept = [first_session(http, callerRegion="us-east")]
        kept += [start_session(http, callerRegion="us-east") for _ in range(CALLS_BEFORE - 1)]
        assert [r.status_code for r in kept] == [201] * CALLS_BEFORE, [r.text for r in kept]
        kept = [r.json()["sessionId"] for r in kept]
        wait_until("the pool grown for its calls, Ready", lambda: replicas() == capacity_before
                   and ready_workers() == capacity_before, timeout=60)
        size_before = replicas()

        operator.kill()  # SIGKILL: no cleanup, no Lease release, as an OOM kill or a lost node
        results, sizes, ready_counts = [], set(), set()
        outage_until = time.monotonic() + OPERATOR_OUTAGE_SECONDS
        while time.monotonic() < outage_until:
            remaining = outage_until - time.monotonic()
            # Calls come and go; in the last seconds they stay until the pool is full, so the load has grown when
            # the operator returns (and no create is asked of a full pool: that 503 would be right, not a fault).
            if len(kept) < size_before * SESSIONS_PER_WORKER:
                created = start_session(http, callerRegion="us-east")
                results.append(created.status_code)
                if created.status_code == 201:
                    if remaining < 8:
                        kept.append(created.json()["sessionId"])
                    else:
                        http.delete(f"/v1/sessions/{created.json()['sessionId']}")
            sizes.add(replicas())
            ready_counts.add(ready_workers())
            time.sleep(0.5 if remaining > 8 else 1.5)
        served = [http.get(f"/v1/sessions/{session}").json()["phase"] for session in kept]

        assert results.count(201) == len(results), f"session creates with the operator down: {results}"
        assert sizes == {size_before}, f"the Deployment's replicas moved with no operator: {sizes}"
        assert ready_counts == {size_before}, f"ready workers during the outage: {ready_counts}"
        assert len(kept) == size_before * SESSIONS_PER_WORKER and "ended" not in served, served

        restarted = time.monotonic()
        operator.start()
        asked = asked_by_load(len(kept))
        seen: list[int] = []
        watch_until = time.monotonic() + 15  # many poll rounds, and well past the 5 s scale-down delay
        while time.monotonic() < watch_until:
            size = replicas()
            if not seen or seen[-1] != size:
                seen.append(size)
            time.sleep(0.2)
        watched = time.monotonic() - restarted
        for session in kept:
            http.delete(f"/v1/sessions/{session}")
    assert seen == [size_before, asked] or (asked == size_before and seen == [size_before]), \
        f"replicas after the restart: {seen}; the load ({len(kept)} calls) asks for {asked}"
    print(f"operator down {OPERATOR_OUTAGE_SECONDS} s: {results.count(201)}/{len(results)} session creates"
          f" succeeded, replicas {size_before} throughout; after restart {' -> '.join(map(str, seen))}"
          f" ({len(kept)} live calls ask for {asked}), watched {watched:.0f} s")
