"""Tenant isolation benchmark: does one tenant's costly specs slow the gateway for everyone else?

One `voxfleet gateway` process, stand-in worker pods (the worker contract, no pipeline) for tenant A's agent, on
this machine (2 shared cores), in a world of its own unless VOXFLEET_WORLD_DIR names a running one. Two phases
of the same length, in the same run:

1. quiet: tenant A's /healthz and session create (POST /v1/agents/{a}/sessions), each one at a time, p50/p99;
2. contended: the same, while tenant B PUTs the worst spec within the limits in a loop
   (tests/api/costly_specs.worst_accepted_spec: distinct RE2 patterns filling the spec's program budget, new
   ones on every PUT so no cache helps; ~0.1 s of checking each).

3. control: the same, while tenant B PUTs a small, cheap spec in the same loop: what any write of B's costs the
   machine (its apiserver apply and watch events share the 2 cores), apart from the checking.

Goal (issue 16): p99 of both within 2x of the quiet phase's. Prints the figures and one JSON line
(prefix `BENCH_JSON `).

    .venv/bin/python bench/tenant_isolation_bench.py [--seconds 15] [--workers 2]
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
sys.path.insert(0, str(ROOT / "bench"))

import aiohttp  # noqa: E402

from gateway_bench import (REGION, SLOTS, STANDIN_CALL_SECONDS, Http, agent_spec, cpu_seconds,  # noqa: E402
                           ms, percentile, process_cpu, wait_for_quiet)
from tests.api.costly_specs import fresh_seed, worst_accepted_spec  # noqa: E402
from tests.crds import install_crds  # noqa: E402
from tests.gateway import worker_pods  # noqa: E402
from tests.gateway.gateway_process import GatewayProcess  # noqa: E402
from tests.gateway.tenant_setup import TenantUnderTest, create_tenant, delete_tenant  # noqa: E402
from voxfleet.world import processes  # noqa: E402
from voxfleet.world.access import Cluster, RunnerPool  # noqa: E402
from voxfleet.world.world import WorldInfo, attach_or_start  # noqa: E402

AGENT = "quiet-agent"


class Platform:
    """A platform namespace, tenant A with stand-in workers, tenant B, and one gateway."""

    def __init__(self, kube: Cluster, pods: RunnerPool, info: WorldInfo, work: Path, workers: int):
        self.kube, self.pods, self.info, self.work, self.workers = kube, pods, info, work, workers
        self.platform_namespace = kube.new_namespace("isobench")
        quotas = {"maxConcurrentSessions": 100000, "maxAgents": 10, "maxWorkers": 100}
        self.quiet = create_tenant(kube, self.platform_namespace, allowed_regions=[REGION], quotas=quotas,
                                   prefix="isoquiet")
        self.costly = create_tenant(kube, self.platform_namespace, allowed_regions=[REGION], quotas=quotas,
                                    prefix="isocostly")
        lk = info.livekit_regions()[REGION]
        dead_url = f"ws://127.0.0.1:{processes.free_port()}"  # stand-ins never join: tokens are minted locally
        regions = {REGION: {"url": dead_url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}}
        self.gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=self.platform_namespace,
                                      log_path=work / f"gateway-{uuid.uuid4().hex[:6]}.log", regions=regions,
                                      extra_env={"VOXFLEET_RATE_LIMIT_PER_SECOND": "1000000",
                                                 "VOXFLEET_RATE_LIMIT_BURST": "1000000",
                                                 "VOXFLEET_LOG_LEVEL": "warning", "VOXFLEET_ACCESS_LOG": "false",
                                                 "VOXFLEET_LOAD_POLL_SECONDS": "2"}).start()

    def deploy(self) -> None:
        import httpx

        with httpx.Client(base_url=self.gateway.url, headers=self.quiet.headers(), timeout=30) as http:
            response = http.put(f"/v1/agents/{AGENT}", json=agent_spec(self.workers))
            assert response.status_code in (200, 201), response.text
        manifests = [worker_pods.standin_pod(self.pods, tenant=self.quiet.name, agent=AGENT, region=REGION,
                                             slots=SLOTS, name=f"standin-{i}", call_seconds=STANDIN_CALL_SECONDS)
                     for i in range(self.workers)]
        names = worker_pods.create(self.kube, self.quiet.namespace, manifests)
        worker_pods.wait_ready(self.kube, self.quiet.namespace, names, timeout=300, pods=self.pods)
        time.sleep(1.0)  # the gateway's Pod watch

    def stop(self) -> None:
        self.gateway.stop()
        for tenant in (self.quiet, self.costly):
            delete_tenant(self.kube, tenant)
        self.kube.delete_namespace(self.platform_namespace)


async def one_at_a_time(seconds: float, call) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)
    return latencies


def cheap_spec(seed: str) -> dict:
    return {"regions": [{"name": REGION, "minWorkers": 0, "maxWorkers": 1}], "greeting": f"Hello {seed}",
            "intents": [{"name": "hello", "keywords": ["hello"], "reply": "Hi."}]}


async def phase(platform: Platform, seconds: float, make_spec=None) -> dict:
    contended = make_spec is not None
    gateway = platform.gateway
    healthz_statuses: list[int] = []
    create_statuses: list[int] = []
    puts: list[tuple[int, float]] = []
    done = asyncio.Event()

    async with Http({}) as plain, Http(platform.quiet.headers()) as quiet, Http(platform.costly.headers()) as costly:
        async def healthz() -> None:
            async with plain.session.get(f"{gateway.url}/healthz") as response:
                await response.read()
                healthz_statuses.append(response.status)

        async def create_session() -> None:
            status, _ = await quiet.post(f"{gateway.url}/v1/agents/{AGENT}/sessions", {})
            create_statuses.append(status)  # stand-ins end their sessions themselves (a hang-up)

        async def hostile() -> None:
            index = 0
            while not done.is_set():
                spec = make_spec(fresh_seed())  # new content every time: nothing cached helps
                started = time.perf_counter()
                async with costly.session.put(f"{gateway.url}/v1/agents/costly-{index % 3}", json=spec) as answer:
                    await answer.read()
                    puts.append((answer.status, time.perf_counter() - started))
                index += 1

        cpu_before = cpu_seconds(gateway.popen.pid)
        snapshot_before = process_cpu()
        loop = asyncio.create_task(hostile()) if contended else None
        if contended:
            await asyncio.sleep(0.5)  # the loop is under way
        health, creates = await asyncio.gather(one_at_a_time(seconds, healthz),
                                               one_at_a_time(seconds, create_session))
        done.set()
        if loop is not None:
            await loop
        gateway_cpu = cpu_seconds(gateway.popen.pid) - cpu_before
        snapshot_after = process_cpu()
    result = {
        "healthz_p50_ms": ms(statistics.median(health)), "healthz_p99_ms": ms(percentile(health, 99)),
        "healthz_samples": len(health), "healthz_non_200": sum(1 for s in healthz_statuses if s != 200),
        "create_p50_ms": ms(statistics.median(creates)), "create_p99_ms": ms(percentile(creates, 99)),
        "create_samples": len(creates), "create_non_201": sum(1 for s in create_statuses if s != 201),
        "gateway_process_cpu_s": round(gateway_cpu, 2),
        "cpu_s_by_process": busiest(snapshot_before, snapshot_after, gateway.popen.pid),
    }
    if contended:
        result.update({"costly_puts": len(puts), "costly_put_statuses": sorted({s for s, _ in puts}),
                       "costly_put_p50_ms": ms(statistics.median([t for _, t in puts])) if puts else None})
    return result


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def busiest(before: dict, after: dict, gateway_pid: int, top: int = 6) -> dict[str, float]:
    """CPU seconds per process name over a phase (the gateway and its spec-checking child named as such), the
    busiest first: where the two cores went."""
    used: dict[str, float] = {}
    for pid, (name, command, cpu) in after.items():
        spent = cpu - before.get(pid, (name, command, 0.0))[2]
        if pid == gateway_pid:
            name = "gateway"
        elif "voxfleet.gateway.spec_check_process" in command:
            name = ("gateway spec-checking child" if parent_of(pid) == gateway_pid
                    else "other gateways' spec-checking children")
        elif pid == os.getpid():
            name = "this bench (load generator)"
        used[name] = used.get(name, 0.0) + spent
    return {name: round(seconds, 2) for name, seconds in sorted(used.items(), key=lambda i: -i[1])[:top]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2, help="stand-in worker pods of tenant A's agent")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="voxfleet-isolation-bench-"))
    info, world = attach_or_start(work, progress=lambda m: print(f"[world] {m}", file=sys.stderr, flush=True))
    platform = None
    worst_accepted_spec(fresh_seed())  # measure the spec layout once, before anything is timed
    try:
        kube = Cluster.of(info)
        install_crds(kube)
        platform = Platform(kube, RunnerPool.of(info), info, work, args.workers)
        platform.deploy()
        print("[bench] stand-ins ready; measuring", file=sys.stderr, flush=True)
        results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}}
        wait_for_quiet()
        results["quiet"] = asyncio.run(phase(platform, args.seconds))
        wait_for_quiet()
        results["contended"] = asyncio.run(phase(platform, args.seconds, worst_accepted_spec))
        wait_for_quiet()
        results["control_cheap_puts"] = asyncio.run(phase(platform, args.seconds, cheap_spec))
        results["machine"]["loadavg_end"] = os.getloadavg()[0]
    finally:
        if platform is not None:
            platform.stop()
        if world is not None:
            world.stop()

    quiet, contended = results["quiet"], results["contended"]
    results["ratios"] = {"healthz_p99": round(contended["healthz_p99_ms"] / quiet["healthz_p99_ms"], 2),
                         "create_p99": round(contended["create_p99_ms"] / quiet["create_p99_ms"], 2)}
    results["goals"] = {"healthz_p99_within_2x": results["ratios"]["healthz_p99"] <= 2.0,
                        "create_p99_within_2x": results["ratios"]["create_p99"] <= 2.0,
                        "costly_puts_accepted": contended["costly_puts"] > 0
                        and set(contended["costly_put_statuses"]) <= {200, 201}}
    report(results)
    return 0


def report(results: dict) -> None:
    quiet, contended, control = results["quiet"], results["contended"], results["control_cheap_puts"]
    print("\nvoxfleet tenant isolation benchmark (one gateway process; everything on this machine)")
    print(f"machine: {results['machine']['cpus']} CPUs, load average {results['machine']['loadavg_start']:.1f}"
          f" -> {results['machine']['loadavg_end']:.1f}")
    print(f"\n{'tenant A, one request at a time':<52} {'p50 ms':>8} {'p99 ms':>8} {'samples':>8}")
    for name, r in (("quiet gateway (baseline)", quiet), ("while tenant B PUTs worst-case specs", contended),
                    ("while tenant B PUTs cheap specs (control)", control)):
        print(f"  /healthz, {name:<40} {r['healthz_p50_ms']:>8} {r['healthz_p99_ms']:>8} {r['healthz_samples']:>8}")
        print(f"  session create, {name:<34} {r['create_p50_ms']:>8} {r['create_p99_ms']:>8}"
              f" {r['create_samples']:>8}   (not 201: {r['create_non_201']})")
    print(f"\ntenant B: {contended['costly_puts']} worst-case PUTs, statuses {contended['costly_put_statuses']},"
          f" p50 {contended['costly_put_p50_ms']} ms each; gateway process CPU {quiet['gateway_process_cpu_s']} s"
          f" quiet, {contended['gateway_process_cpu_s']} s contended (its spec-checking child not included)")
    print(f"control: tenant B: {control['costly_puts']} cheap PUTs, statuses {control['costly_put_statuses']},"
          f" p50 {control['costly_put_p50_ms']} ms each; gateway process CPU {control['gateway_process_cpu_s']} s")
    for name, r in (("quiet", quiet), ("worst-case PUTs", contended), ("cheap PUTs", control)):
        print(f"CPU seconds by process, {name}: {r['cpu_s_by_process']}")
    print(f"p99 contended/quiet: {results['ratios']}; goals: {results['goals']}")
    print("BENCH_JSON " + json.dumps({"bench": "tenant_isolation", **results}, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
