"""Gateway benchmark: allocation latency and sustained sessions per second of one `voxfleet gateway` process
with real worker processes answering dispatch, and session create -> agent audio in the room.

Everything runs on this machine (a shared 2-core box: other people's work too), in a world of its own unless
VOXFLEET_WORLD_DIR names a running one. Measured, each against a baseline taken in the same run:

1. Allocation latency (POST /v1/agents/{a}/sessions, one at a time) p50/p99, as the client sees it and inside
   the gateway (its allocation histogram); no LiveKit call is on this path (tokens are minted locally).
   Baseline: the same worker's POST /v1/dispatch called directly by the bench.
2. Sustained sessions per second: concurrent clients creating sessions for a fixed time; slots recycle as the
   bench releases each real worker's session right away and stand-ins end theirs after 0.25 s (a hang-up, no
   request: the load generator's CPU competes with the gateway's). Where the two cores went, per session: the
   gateway, the workers, the load generator and the rest (the busiest other processes named), from /proc; the
   gateway's own CPU per allocation gives the rate one gateway core could sustain. Run against stand-in worker
   pods (tests/gateway/standin_worker.py: the same contract, no pipeline) and real `voxfleet worker` pods,
   which build a Pipecat pipeline per session (~30 ms of CPU), so on 2 shared cores they, not the gateway, run
   out first. In phases 1-2 the region's LiveKit URL points at a closed port: workers would otherwise make
   hundreds of WebRTC joins a second, which is a LiveKit load test, not this one.
3. Session create -> first agent audio heard in the room (the greeting), p50/p95, real LiveKit and real
   workers: the caller joins with the returned token right after the 201. Baseline: the bench dispatches to
   the same workers directly (minting the tokens itself) and joins the same way.
4. The paths that talk to the apiserver (the gateway's Kubernetes client and watch caches): start -> ready
   (list + watch of keys, Tenants, VoiceAgents and worker Pods), agent write (PUT: read, list, apply), agent
   read and list, secret list, and how long a created or revoked API key takes to reach the gateway's watched
   copy (accepted / refused).

`--gateway-tree DIR` runs the gateway process from another checkout's code (e.g. `git worktree add /tmp/base-gw
<commit>`), everything else from this one: run it once with and once without to compare code in the same session.

Prints the figures and one JSON line (prefix `BENCH_JSON `).

    .venv/bin/python bench/gateway_bench.py [--seconds 10] [--concurrency 16] [--workers 3] [--audio-sessions 10]
        [--kube-samples 60] [--gateway-tree DIR] [--only-kube-paths]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import uvloop  # noqa: E402
from kubernetes import client  # noqa: E402

from tests.callers.caller_bot import CallerBot, mint_token  # noqa: E402
from tests.crds import install_crds  # noqa: E402
from tests.gateway import worker_pods  # noqa: E402
from tests.gateway.gateway_process import SIGNING_KEY, GatewayProcess  # noqa: E402
from tests.gateway.tenant_setup import create_tenant  # noqa: E402
from voxfleet.api.tenant import PLURAL as TENANT_PLURAL  # noqa: E402
from voxfleet.api.voiceagent import GROUP, VERSION  # noqa: E402
from voxfleet.gateway import api_keys, session_ids  # noqa: E402
from voxfleet.world import processes  # noqa: E402
from voxfleet.world.access import Cluster, RunnerPool  # noqa: E402
from voxfleet.world.world import WorldInfo, attach_or_start  # noqa: E402

REGION = "us-east"
REAL, STANDIN = "bench-real", "bench-standin"
SLOTS = 100
STANDIN_CALL_SECONDS = 0.25  # stand-in sessions end by themselves (a hang-up): no release request per session
GREETING = "Hello, how can I help?"
# The bench tenant's worker token (each namespace's workers accept only their own): filled in by Bench.deploy.
WORKER_HEADERS: dict[str, str] = {}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] if ordered else float("nan")


def ms(value: float) -> float:
    return round(value * 1000, 2)


def agent_spec(workers: int) -> dict:
    return {
        "greeting": GREETING,
        "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                     "tts": {"provider": "espeak", "voice": "en-us"}},
        "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}},
        "intents": [{"name": "bye", "keywords": ["goodbye"], "reply": "Goodbye."}],
        "regions": [{"name": REGION, "minWorkers": 0, "maxWorkers": workers}],
        "scaling": {"sessionsPerWorker": SLOTS, "bufferSessions": 0},
        "limits": {"maxSessionSeconds": 60, "idleTimeoutSeconds": 30},
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds this machine spent working (all cores, every process): /proc/stat's user, nice, system, irq
    and softirq; not idle, iowait, or steal (time the hypervisor gave to other guests)."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(busy_below: float = 0.5, longest: float = 30.0) -> None:
    """Until the machine is less than ``busy_below`` busy over a second (or ``longest`` passed): the work one
    phase leaves behind (workers tearing down sessions) must not be charged to the next."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = machine_busy_seconds()
        time.sleep(1.0)
        if (machine_busy_seconds() - before) / (os.cpu_count() or 1) < busy_below:
            return


def process_cpu() -> dict[int, tuple[str, str, float]]:
    """Every process's (name, command line, CPU seconds): two snapshots say who used the cores in between."""
    snapshot = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                snapshot[int(entry.name)] = (name, command, cpu_seconds(int(entry.name)))
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    return snapshot


def cpu_split(before: dict[int, tuple[str, str, float]], after: dict[int, tuple[str, str, float]], *,
              gateway: int, workers_command: str, sessions: int) -> dict:
    """CPU ms per session of the gateway, the worker processes (command line holds ``workers_command``), this
    load generator and the rest, the rest's busiest process names beside it."""
    per_session = 1000 / max(1, sessions)
    groups = {"gateway_ms": 0.0, "workers_ms": 0.0, "load_generator_ms": 0.0}
    others: dict[str, float] = {}
    for pid, (name, command, cpu) in after.items():
        used = cpu - before.get(pid, (name, command, 0.0))[2]
        if pid == gateway:
            groups["gateway_ms"] += used
        elif pid == os.getpid():
            groups["load_generator_ms"] += used
        elif workers_command in command:
            groups["workers_ms"] += used
        else:
            others[name] = others.get(name, 0.0) + used
    busiest = sorted(others.items(), key=lambda item: -item[1])[:4]
    return {**{key: round(seconds * per_session, 3) for key, seconds in groups.items()},
            "rest_ms": round(sum(others.values()) * per_session, 3),
            "rest_busiest_ms": {name: round(seconds * per_session, 3) for name, seconds in busiest}}


def gateway_histogram(gateway: GatewayProcess, metric: str, *label_pairs: str) -> tuple[float, float]:
    """(sum, count) of one of the gateway's histograms, over the series that carry all the given labels."""
    total = count = 0.0
    for line in gateway.metrics().splitlines():  # the operational port: /metrics is not on the API port
        if line.startswith(f"{metric}_") and all(pair in line for pair in label_pairs):
            if line.startswith(f"{metric}_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith(f"{metric}_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def allocation_split(gateway: GatewayProcess, agent: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """The allocation histogram of an agent and the accepted-dispatch histogram: the gateway's own time is the
    first's mean minus the second's (the worker's answer, network included)."""
    return (gateway_histogram(gateway, "voxfleet_gateway_allocation_seconds", f'agent="{agent}"', 'result="ok"'),
            gateway_histogram(gateway, "voxfleet_gateway_dispatch_seconds", 'answer="accepted"'))


def mean_between(before: tuple[float, float], after: tuple[float, float]) -> float:
    return (after[0] - before[0]) / max(1.0, after[1] - before[1])


class Bench:
    def __init__(self, kube: Cluster, pods: RunnerPool, info: WorldInfo, work: Path, workers: int,
                 gateway_tree: Path | None = None):
        self.kube, self.pods, self.info, self.work, self.workers = kube, pods, info, work, workers
        self.gateway_tree = gateway_tree
        self.platform_namespace = kube.new_namespace("gwbench")
        self.tenant = create_tenant(kube, self.platform_namespace, allowed_regions=[REGION],
                                    quotas={"maxConcurrentSessions": 100000, "maxAgents": 10, "maxWorkers": 100},
                                    prefix="gwbench")
        self.gateways: list[GatewayProcess] = []
        self.ips: dict[str, list[str]] = {}

    def gateway(self, livekit_url: str) -> GatewayProcess:
        lk = self.info.livekit_regions()[REGION]
        regions = {REGION: {"url": livekit_url, "apiUrl": lk.http_url, "apiKey": lk.api_key,
                            "apiSecret": lk.api_secret}}
        process = GatewayProcess(kubeconfig=self.kube.kubeconfig, platform_namespace=self.platform_namespace,
                                 log_path=self.work / f"gateway-{uuid.uuid4().hex[:6]}.log", regions=regions,
                                 extra_env={"VOXFLEET_RATE_LIMIT_PER_SECOND": "1000000",
                                            "VOXFLEET_RATE_LIMIT_BURST": "1000000", "VOXFLEET_LOG_LEVEL": "warning",
                                            "VOXFLEET_ACCESS_LOG": "false", "VOXFLEET_LOAD_POLL_SECONDS": "2"})
        if self.gateway_tree is not None:
            assert process.argv[1:3] == ["-m", "voxfleet.gateway.main"], process.argv
            process.argv = [process.argv[0], str(Path(__file__).with_name("in_tree.py")), str(self.gateway_tree),
                            *process.argv[1:]]
        self.gateways.append(process)
        process.start()
        if self.gateway_tree is not None:
            assert f"gateway code from {self.gateway_tree}/" in process.log(), process.log()[-2000:]
        return process

    def deploy(self, gateway: GatewayProcess, *, with_workers: bool = True) -> None:
        namespace, tenant = self.tenant.namespace, self.tenant.name
        WORKER_HEADERS.update(worker_pods.worker_headers(namespace))
        with httpx.Client(base_url=gateway.url, headers=self.tenant.headers(), timeout=30) as http:
            for agent in (REAL, STANDIN):
                response = http.put(f"/v1/agents/{agent}", json=agent_spec(self.workers))
                assert response.status_code in (200, 201), response.text
        if not with_workers:
            return
        spec = agent_spec(self.workers)
        manifests = [worker_pods.agent_config_map(namespace, "bench-config", tenant=tenant, agent=REAL, spec=spec)]
        manifests += [worker_pods.real_worker_pod(self.pods, tenant=tenant, agent=REAL, region=REGION,
                                                  namespace=namespace, config_map="bench-config",
                                                  name=f"real-{i}") for i in range(self.workers)]
        manifests += [worker_pods.standin_pod(self.pods, tenant=tenant, agent=STANDIN, region=REGION, slots=SLOTS,
                                              name=f"standin-{i}", call_seconds=STANDIN_CALL_SECONDS)
                      for i in range(self.workers)]
        for manifest in manifests:  # under bench/in_tree.py the worker processes run the same tree's code
            for container in manifest["spec"]["containers"] if manifest["kind"] == "Pod" else []:
                container["env"] = container.get("env", []) + [
                    {"name": name, "value": os.environ[name]} for name in ("PYTHONPATH", "VOXFLEET_CODE_TREE")
                    if os.environ.get("VOXFLEET_CODE_TREE") and os.environ.get(name)]
        names = worker_pods.create(self.kube, namespace, manifests)
        ips = worker_pods.wait_ready(self.kube, namespace, names, timeout=300, pods=self.pods)
        self.ips = {REAL: [ips[f"real-{i}"] for i in range(self.workers)],
                    STANDIN: [ips[f"standin-{i}"] for i in range(self.workers)]}
        time.sleep(1.0)  # the gateways' Pod watches

    def set_quota(self, limit: int) -> None:
        with self.kube.api_client() as api:
            client.CustomObjectsApi(api).patch_cluster_custom_object(
                GROUP, VERSION, TENANT_PLURAL, self.tenant.name, {"spec": {"quotas": {"maxConcurrentSessions": limit}}})
        time.sleep(1.0)  # the gateways' Tenant watches

    def stop(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        with self.kube.api_client() as api:
            try:
                client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL,
                                                                          self.tenant.name)
            except client.exceptions.ApiException:
                pass
        self.kube.delete_namespace(self.tenant.namespace)
        self.kube.delete_namespace(self.platform_namespace)


def worker_ip(session_id: str, tenant: str) -> str:
    ref = session_ids.decode(session_id, tenant=tenant, keys=[SIGNING_KEY.encode()])
    assert ref is not None
    return ref.worker_ip


class Http:
    """A lean async HTTP client for the load (aiohttp: the load generator shares the CPUs it measures)."""

    def __init__(self, headers: dict[str, str], connections: int = 64):
        self.session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=60),
                                             connector=aiohttp.TCPConnector(limit=connections, limit_per_host=64))

    async def __aenter__(self) -> "Http":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()

    async def post(self, url: str, body: dict) -> tuple[int, dict]:
        async with self.session.post(url, json=body) as response:
            return response.status, await response.json(content_type=None)

    async def delete(self, url: str, headers: dict[str, str] | None = None) -> int:
        async with self.session.delete(url, headers=headers) as response:
            await response.read()
            return response.status


async def release(http: Http, ip: str, session_id: str) -> None:
    """End a session at its worker; once more on a fresh connection when a kept-alive one was closed under it
    (a busy worker's server drops idle connections after 5 s, and a slot left taken would skew the next run)."""
    for attempt in (1, 2):
        try:
            await http.delete(f"http://{ip}:8080/v1/sessions/{session_id}", headers=WORKER_HEADERS)
            return
        except aiohttp.ClientOSError:
            if attempt == 2:
                raise


def dispatch_body(bench: Bench, agent: str, livekit_url: str, room: str, session_id: str) -> dict:
    lk = bench.info.livekit_regions()[REGION]
    identity = f"vf-agent.{uuid.uuid4().hex[:16]}.bench"
    return {"sessionId": session_id, "tenant": bench.tenant.name, "agent": agent, "region": REGION, "room": room,
            "livekitUrl": livekit_url, "agentIdentity": identity,
            "livekitToken": mint_token(room=room, identity=identity, url=livekit_url, api_key=lk.api_key,
                                       api_secret=lk.api_secret)}


# --- 1. latency, one at a time ---------------------------------------------------------------------------------

async def direct_latency(bench: Bench, agent: str, count: int, dead_url: str) -> list[float]:
    """Baseline: the bench's own POST /v1/dispatch to the worker (what a slot claim costs without the gateway)."""
    ip = bench.ips[agent][0]
    latencies = []
    async with Http(WORKER_HEADERS) as http:
        for _ in range(count):
            session_id = f"bench-{uuid.uuid4().hex}"
            body = dispatch_body(bench, agent, dead_url, f"bench-room-{session_id}", session_id)
            started = time.perf_counter()
            status, answer = await http.post(f"http://{ip}:8080/v1/dispatch", body)
            latencies.append(time.perf_counter() - started)
            assert status == 201, answer
            await release(http, ip, session_id)
    return latencies


async def gateway_latency(bench: Bench, gateway: GatewayProcess, agent: str, count: int
                          ) -> tuple[list[float], float, float]:
    """Client-side latencies, and the mean allocation and mean accepted dispatch inside the gateway."""
    before = allocation_split(gateway, agent)
    latencies = []
    async with Http(bench.tenant.headers()) as http:
        for _ in range(count):
            started = time.perf_counter()
            status, answer = await http.post(f"{gateway.url}/v1/agents/{agent}/sessions", {})
            latencies.append(time.perf_counter() - started)
            assert status == 201, answer
            session_id = answer["sessionId"]
            await release(http, worker_ip(session_id, bench.tenant.name), session_id)
    after = allocation_split(gateway, agent)
    return latencies, mean_between(before[0], after[0]), mean_between(before[1], after[1])


# --- 2. sustained rate -------------------------------------------------------------------------------------------

async def sustained(bench: Bench, gateway: GatewayProcess, agent: str, seconds: float, concurrency: int, *,
                    release_sessions: bool) -> dict:
    """Concurrent clients creating sessions for ``seconds``; the bench releases each at its worker when asked
    to (real workers), stand-ins end theirs by themselves (--call-seconds), which keeps the load generator's
    share of the two CPUs small."""
    latencies: list[float] = []
    refusals: dict[int, int] = {}
    releases: set[asyncio.Task] = set()
    async with Http(bench.tenant.headers(), connections=concurrency * 4) as http:
        processes_before, machine_before, started = process_cpu(), machine_busy_seconds(), time.monotonic()
        deadline = started + seconds

        async def client_loop() -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                status, answer = await http.post(f"{gateway.url}/v1/agents/{agent}/sessions", {})
                if status != 201:
                    refusals[status] = refusals.get(status, 0) + 1
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter() - began)
                if not release_sessions:
                    continue
                session_id = answer["sessionId"]
                task = asyncio.create_task(release(http, worker_ip(session_id, bench.tenant.name), session_id))
                releases.add(task)
                task.add_done_callback(releases.discard)

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
        processes_after, machine = process_cpu(), machine_busy_seconds() - machine_before
        await asyncio.gather(*releases, return_exceptions=True)
    split = cpu_split(processes_before, processes_after, gateway=gateway.popen.pid, sessions=len(latencies),
                      workers_command="standin_worker.py" if agent == STANDIN else "voxfleet worker")
    # Work no process that lived through both snapshots holds: the kernel's, and processes that ended meanwhile.
    split["unattributed_ms"] = round(machine * 1000 / max(1, len(latencies)) - split["gateway_ms"]
                                     - split["workers_ms"] - split["load_generator_ms"] - split["rest_ms"], 3)
    split["machine_busy_pct"] = round(100 * machine / (elapsed * (os.cpu_count() or 1)), 1)
    return {"cpu_ms_per_session": split, "sessions": len(latencies), "seconds": round(elapsed, 2),
            "rate": round(len(latencies) / elapsed, 1),
            "p50_ms": ms(statistics.median(latencies)) if latencies else None,
            "p99_ms": ms(percentile(latencies, 99)) if latencies else None,
            "one_core_rate": round(1000 / split["gateway_ms"], 1) if split["gateway_ms"] else None,
            "refused": refusals}


# --- 3. create -> agent audio -------------------------------------------------------------------------------------

async def first_audio(url: str, token: str, started: float) -> float:
    async with CallerBot(url, token) as caller:
        greeting = await caller.wait_for_agent_speech(after=started, timeout=30)
        return greeting.start - started


async def audio_via_gateway(bench: Bench, gateway: GatewayProcess, count: int) -> list[float]:
    results = []
    async with httpx.AsyncClient(headers=bench.tenant.headers(), timeout=30) as http:
        for _ in range(count):
            started = time.monotonic()
            response = await http.post(f"{gateway.url}/v1/agents/{REAL}/sessions", json={})
            assert response.status_code == 201, response.text
            created = response.json()
            results.append(await first_audio(created["livekitUrl"], created["token"], started))
            await asyncio.sleep(0.5)  # the caller left; the session ends at its worker
    return results


async def audio_direct(bench: Bench, count: int) -> list[float]:
    lk = bench.info.livekit_regions()[REGION]
    results = []
    async with httpx.AsyncClient(headers=WORKER_HEADERS, timeout=30) as http:
        for index in range(count):
            ip = bench.ips[REAL][index % len(bench.ips[REAL])]
            session_id = f"bench-{uuid.uuid4().hex}"
            room = f"bench-direct-{session_id}"
            started = time.monotonic()
            response = await http.post(f"http://{ip}:8080/v1/dispatch",
                                       json=dispatch_body(bench, REAL, lk.url, room, session_id))
            assert response.status_code == 201, response.text
            token = mint_token(room=room, identity=f"caller-{session_id[-8:]}", url=lk.url, api_key=lk.api_key,
                               api_secret=lk.api_secret)
            results.append(await first_audio(lk.url, token, started))
            await asyncio.sleep(0.5)
    return results


# --- 4. the paths that talk to the apiserver ---------------------------------------------------------------------

def summary(values: list[float]) -> dict:
    return {"p50_ms": ms(statistics.median(values)), "p99_ms": ms(percentile(values, 99)), "samples": len(values)}


def start_to_ready(bench: Bench, livekit_url: str, count: int) -> list[float]:
    """Process start -> /readyz 200 (imports, then list + watch of the four watched kinds); each gateway stopped."""
    results = []
    for _ in range(count):
        started = time.monotonic()
        gateway = bench.gateway(livekit_url)
        results.append(time.monotonic() - started)
        gateway.stop()
        bench.gateways.remove(gateway)
    return results


async def timed_requests(http: httpx.AsyncClient, count: int, method: str, url: str, *,
                         bodies: list[dict] | None = None, expect: tuple[int, ...] = (200,)) -> list[float]:
    latencies = []
    for index in range(count):
        body = bodies[index % len(bodies)] if bodies else None
        started = time.perf_counter()
        response = await http.request(method, url, json=body)
        latencies.append(time.perf_counter() - started)
        assert response.status_code in expect, (method, url, response.status_code, response.text[:300])
    return latencies


async def key_propagation(bench: Bench, gateway: GatewayProcess, count: int) -> tuple[list[float], list[float]]:
    """A key Secret created (deleted) with the apiserver's answer -> the first request the gateway accepts (refuses)
    with that key: the watch's latency, polled every 2 ms on a path that needs no apiserver (a bogus session id
    is 404 for a known key, 401 for an unknown one)."""
    added, revoked = [], []
    namespace = bench.platform_namespace
    probe = f"{gateway.url}/v1/sessions/vfs_nosuchsession0000000000000000"

    async def until(http: httpx.AsyncClient, headers: dict, accepted: bool, since: float) -> float:
        deadline = since + 30
        while time.monotonic() < deadline:
            status = (await http.get(probe, headers=headers)).status_code
            if (status != 401) == accepted:
                return time.monotonic() - since
            await asyncio.sleep(0.002)
        raise TimeoutError(f"the gateway never {'accepted' if accepted else 'refused'} the key")

    with bench.kube.api_client() as api:
        core = client.CoreV1Api(api)
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(count):
                key = api_keys.generate()
                headers = {"Authorization": f"Bearer {key.plaintext}"}
                manifest = api_keys.secret_manifest(tenant=bench.tenant.name, key=key, namespace=namespace,
                                                    description="bench")
                await asyncio.to_thread(core.create_namespaced_secret, namespace, manifest)
                added.append(await until(http, headers, True, time.monotonic()))
                await asyncio.to_thread(core.delete_namespaced_secret, api_keys.secret_name(key.key_id), namespace)
                revoked.append(await until(http, headers, False, time.monotonic()))
    return added, revoked


async def kube_paths(bench: Bench, gateway: GatewayProcess, count: int) -> dict:
    spec = agent_spec(bench.workers)
    # Two greetings in turn: every PUT changes the object (a real apply), and the spec check is cached after two.
    bodies = [{**spec, "greeting": "Hello, how can I help?"}, {**spec, "greeting": "Hi, what can I do for you?"}]
    agents = f"{gateway.url}/v1/agents"
    async with httpx.AsyncClient(headers=bench.tenant.headers(), timeout=30) as http:
        put = await timed_requests(http, count, "PUT", f"{agents}/bench-writes", bodies=bodies, expect=(200, 201))
        read = await timed_requests(http, count, "GET", f"{agents}/{REAL}")
        listed = await timed_requests(http, count, "GET", agents)
        secrets = await timed_requests(http, count, "GET", f"{gateway.url}/v1/secrets")
        await http.delete(f"{agents}/bench-writes")
    added, revoked = await key_propagation(bench, gateway, max(5, count // 4))
    return {"agent_put": summary(put), "agent_get": summary(read), "agent_list": summary(listed),
            "secret_list": summary(secrets), "key_accepted_after": summary(added),
            "key_refused_after": summary(revoked)}


# --- main ----------------------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each sustained-rate run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients in the sustained runs")
    parser.add_argument("--workers", type=int, default=3, help="worker pods of each kind")
    parser.add_argument("--latency-samples", type=int, default=200, help="sequential allocations for latency")
    parser.add_argument("--audio-sessions", type=int, default=10, help="sessions for create -> audio")
    parser.add_argument("--kube-samples", type=int, default=60, help="requests per apiserver-backed path")
    parser.add_argument("--starts", type=int, default=3, help="gateway starts timed (start -> ready)")
    parser.add_argument("--gateway-tree", type=Path, default=None,
                        help="run the gateway process from this checkout's code (a same-run baseline)")
    parser.add_argument("--only-kube-paths", action="store_true", help="phase 4 alone (no workers' figures)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="voxfleet-gateway-bench-"))
    info, world = attach_or_start(work, progress=lambda m: print(f"[world] {m}", file=sys.stderr, flush=True))
    bench = None
    try:
        kube = Cluster.of(info)
        install_crds(kube)
        bench = Bench(kube, RunnerPool.of(info), info, work, args.workers, gateway_tree=args.gateway_tree)
        dead_url = f"ws://127.0.0.1:{processes.free_port()}"  # nothing listens: workers' joins fail at once
        allocating = bench.gateway(dead_url)
        bench.deploy(allocating, with_workers=not args.only_kube_paths)
        print("[bench] workers ready; measuring", file=sys.stderr, flush=True)
        results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]},
                         "gateway_tree": str(args.gateway_tree or ROOT)}
        n = args.latency_samples

        results["kube_paths"] = {"start_to_ready": summary(start_to_ready(bench, dead_url, args.starts)),
                                 **asyncio.run(kube_paths(bench, allocating, args.kube_samples))}
        print("[bench] apiserver-backed paths done", file=sys.stderr, flush=True)
        if args.only_kube_paths:
            results["machine"]["loadavg_end"] = os.getloadavg()[0]
            report_kube_paths(results)
            print("BENCH_JSON " + json.dumps({"bench": "gateway", **results}, sort_keys=True))
            return 0

        # After a run the real workers spend seconds more tearing down its hundreds of sessions (measured: ~0.8
        # of a core for 5 s); each phase starts once the machine is quiet again.
        for agent in (STANDIN, REAL):
            kind = "real" if agent == REAL else "standin"
            direct = asyncio.run(direct_latency(bench, agent, n, dead_url))
            via, inside, dispatch = asyncio.run(gateway_latency(bench, allocating, agent, n))
            results[f"latency_{kind}"] = {
                "direct_dispatch_p50_ms": ms(statistics.median(direct)),
                "direct_dispatch_p99_ms": ms(percentile(direct, 99)),
                "gateway_p50_ms": ms(statistics.median(via)), "gateway_p99_ms": ms(percentile(via, 99)),
                "gateway_inside_mean_ms": ms(inside), "gateway_dispatch_mean_ms": ms(dispatch),
                "gateway_own_mean_ms": ms(inside - dispatch), "samples": n}
            # uvloop for the load generator (it shares the CPUs it measures, so its own loop should cost little);
            # the gateway itself runs the standard asyncio loop (gateway/main.py says why).
            results[f"sustained_{kind}"] = uvloop.run(sustained(bench, allocating, agent, args.seconds,
                                                                args.concurrency, release_sessions=agent == REAL))
            print(f"[bench] {kind} workers done", file=sys.stderr, flush=True)
            wait_for_quiet()

        bench.set_quota(SLOTS * args.workers - 1)  # potential capacity above the quota: claim-then-count runs
        counted, counted_inside, _ = asyncio.run(gateway_latency(bench, allocating, STANDIN, n // 2))
        results["latency_with_quota_count"] = {"gateway_p50_ms": ms(statistics.median(counted)),
                                               "gateway_p99_ms": ms(percentile(counted, 99)),
                                               "gateway_inside_mean_ms": ms(counted_inside),
                                               "workers_counted": 2 * args.workers}
        bench.set_quota(100000)

        speaking = bench.gateway(info.livekit_regions()[REGION].url)
        direct_audio = asyncio.run(audio_direct(bench, args.audio_sessions))
        gateway_audio = asyncio.run(audio_via_gateway(bench, speaking, args.audio_sessions))
        results["create_to_audio"] = {
            "direct_p50_ms": ms(statistics.median(direct_audio)), "direct_p95_ms": ms(percentile(direct_audio, 95)),
            "gateway_p50_ms": ms(statistics.median(gateway_audio)), "gateway_p95_ms": ms(percentile(gateway_audio, 95)),
            "samples": args.audio_sessions}
        results["machine"]["loadavg_end"] = os.getloadavg()[0]
    finally:
        if bench is not None:
            bench.stop()
        if world is not None:
            world.stop()

    results["goals"] = {
        "allocation_p99_lt_50ms": results["latency_standin"]["gateway_p99_ms"] < 50,
        "ge_300_sessions_per_s": results["sustained_standin"]["rate"] >= 300,
        "create_to_audio_p95_le_500ms": results["create_to_audio"]["gateway_p95_ms"] <= 500}
    report(results)
    return 0


def report_kube_paths(results: dict) -> None:
    print(f"\ngateway code: {results['gateway_tree']}")
    print(f"{'apiserver-backed paths':<44} {'p50 ms':>8} {'p99 ms':>8} {'samples':>8}")
    names = {"start_to_ready": "start -> ready (list + watch x4)", "agent_put": "PUT /v1/agents/{a} (apply)",
             "agent_get": "GET /v1/agents/{a}", "agent_list": "GET /v1/agents", "secret_list": "GET /v1/secrets",
             "key_accepted_after": "key created -> accepted (watch)",
             "key_refused_after": "key revoked -> refused (watch)"}
    for key, label in names.items():
        r = results["kube_paths"][key]
        print(f"  {label:<42} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['samples']:>8}")


def report(results: dict) -> None:
    print("\nvoxfleet gateway benchmark (one gateway process; everything on this machine)")
    print(f"machine: {results['machine']['cpus']} CPUs, load average {results['machine']['loadavg_start']:.1f}"
          f" -> {results['machine']['loadavg_end']:.1f}")
    print(f"\n{'allocation latency, one at a time':<44} {'p50 ms':>8} {'p99 ms':>8}")
    for kind in ("real", "standin"):
        r = results[f"latency_{kind}"]
        print(f"  {kind + ' workers: direct dispatch (baseline)':<42} {r['direct_dispatch_p50_ms']:>8} "
              f"{r['direct_dispatch_p99_ms']:>8}")
        print(f"  {kind + ' workers: through the gateway':<42} {r['gateway_p50_ms']:>8} {r['gateway_p99_ms']:>8}"
              f"   (inside the gateway: mean {r['gateway_inside_mean_ms']} ms, of which the worker's dispatch"
              f" answer {r['gateway_dispatch_mean_ms']} ms)")
    q = results["latency_with_quota_count"]
    print(f"  {'with claim-then-count quota check':<42} {q['gateway_p50_ms']:>8} {q['gateway_p99_ms']:>8}"
          f"   ({q['workers_counted']} workers counted)")
    print(f"\n{'sustained sessions/s':<44} {'rate':>8} {'p50 ms':>8} {'p99 ms':>8} {'gw CPU ms':>10}"
          f" {'1-core rate':>12}")
    for kind in ("real", "standin"):
        r = results[f"sustained_{kind}"]
        split = r["cpu_ms_per_session"]
        print(f"  {kind + ' workers':<42} {r['rate']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}"
              f" {split['gateway_ms']:>10} {r['one_core_rate']:>12}   refused {r['refused']}")
        print(f"    CPU ms per session: gateway {split['gateway_ms']}, workers {split['workers_ms']}, load"
              f" generator {split['load_generator_ms']}, other processes {split['rest_ms']}"
              f" ({split['rest_busiest_ms']}), unattributed {split['unattributed_ms']};"
              f" machine {split['machine_busy_pct']} % busy")
    a = results["create_to_audio"]
    print(f"\n{'session create -> agent audio heard':<44} {'p50 ms':>8} {'p95 ms':>8}")
    print(f"  {'direct dispatch (baseline)':<42} {a['direct_p50_ms']:>8} {a['direct_p95_ms']:>8}")
    print(f"  {'through the gateway':<42} {a['gateway_p50_ms']:>8} {a['gateway_p95_ms']:>8}")
    report_kube_paths(results)
    print("\ngoals (stand-in workers for the first two: real ones run out of CPU first here):"
          f" {results['goals']}")
    print("BENCH_JSON " + json.dumps({"bench": "gateway", **results}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
