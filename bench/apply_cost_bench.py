"""What one write costs the apiserver: server-side apply against a plain create (and a merge patch), measured.

The operator's scale run (operator_bench.py --scale) ends with a saturated apiserver, where every write's CPU is
what the whole fleet waits on. The operator writes its objects with server-side apply; the no-operator floor
creates them with POST. This bench writes the same objects (the operator's own builders: per agent a ConfigMap,
a Service, and per region a Deployment and a PodDisruptionBudget) both ways into one fresh world, in alternating
rounds (so a noisy neighbour hits both alike), and reports the apiserver's and etcd's CPU per object for each,
and their ratio. It also measures a no-op apply (the object already as sent), a merge patch, and the VoiceAgent's
own writes (its create and the operator's two status patches), which the CRD's schema and CEL rules check.

    .venv/bin/python bench/apply_cost_bench.py [--agents 300] [--rounds 4] [--concurrency 32]

Pools are scaled to zero (no pods), so the controller-manager's work per Deployment is the same in both rounds.
Prints its figures and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ["us-east", "eu-west", "ap-south"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
IDLE_CPU = 0.06  # cores: an idle apiserver with its controller-manager and kwok polling


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process, from /proc (the world's servers are our children's children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def agent_objects(index: int, namespace: str, platform: Any) -> list[dict[str, Any]]:
    from voxfleet.api.voiceagent import VoiceAgentSpec
    from voxfleet.api.worker_config import WorkerConfig
    from voxfleet.operator.agent_builder import build_config_map, build_service
    from voxfleet.operator.ownership import Owner
    from voxfleet.operator.pool_builder import build_deployment, build_pod_disruption_budget

    spec = VoiceAgentSpec.model_validate({
        "greeting": "Hello.", "regions": [{"name": r, "minWorkers": 0, "maxWorkers": 4} for r in REGIONS]})
    config = WorkerConfig(tenant="bench", agent=f"agent-{index:04d}", namespace=namespace, generation=1, spec=spec)
    owner = Owner("VoiceAgent", "x", "x")
    objects = [build_config_map(owner, config), build_service(owner, config, platform)]
    for region in REGIONS:
        objects += [build_deployment(owner, config, region, 0, platform),
                    build_pod_disruption_budget(owner, config, region)]
    for manifest in objects:
        del manifest["metadata"]["ownerReferences"]  # no owner object in this world
    return objects


def voice_agent(index: int, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "voxfleet.dev/v1alpha1", "kind": "VoiceAgent",
            "metadata": {"name": f"agent-{index:04d}", "namespace": namespace},
            "spec": {"greeting": "Hello.", "regions": [{"name": r, "minWorkers": 0, "maxWorkers": 4} for r in REGIONS]}}


def agent_status_of(ready: bool) -> dict[str, Any]:
    """What the operator writes: first with its Deployments just applied, then once they are available."""
    from voxfleet.operator.agent_status import RegionFigures, build_agent_status

    figures = [RegionFigures(r, 0, rolled_out=ready, has_pool=True) for r in REGIONS]
    previous = None if not ready else build_agent_status(1, REGIONS, [RegionFigures(r, 0, rolled_out=False)
                                                                      for r in REGIONS], [], None)
    return build_agent_status(1, REGIONS, figures, [], previous)


class Bench:
    def __init__(self, args, client, pids: dict[str, int]):
        self.args, self.client = args, client
        self.pids = {name: pid for name, pid in pids.items() if name in ("kube-apiserver", "etcd")}
        self.spent: dict[str, list[float]] = {}  # way -> [cpu s per object, per round]
        self.wall: dict[str, list[float]] = {}

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids.values())

    async def _gather(self, calls) -> None:
        limit = asyncio.Semaphore(self.args.concurrency)

        async def one(call):
            async with limit:
                await call

        await asyncio.gather(*(one(call) for call in calls))

    async def _settled(self, limit_s: float = 60.0) -> None:
        """Until the apiserver and etcd are near idle: the controller-manager's echo of the last batch (a
        ReplicaSet per Deployment, their statuses) must not be counted against the next one."""
        deadline = time.monotonic() + limit_s
        previous = self.cpu()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = self.cpu()
            if (now - previous) / 0.5 < IDLE_CPU:
                return
            previous = now

    async def _measured(self, way: str, objects: int, calls) -> None:
        await self._settled()
        before, started = self.cpu(), time.monotonic()
        await self._gather(calls)
        wall = time.monotonic() - started
        await self._settled()  # what the writes set off (watch fan-out, the controllers' echo) is their cost
        self.spent.setdefault(way, []).append((self.cpu() - before) / objects)
        self.wall.setdefault(way, []).append(wall / objects)
        print(f"  {way:>13}: {objects} objects, {1000 * wall / objects:.2f} ms wall and "
              f"{1000 * self.spent[way][-1]:.2f} ms apiserver+etcd CPU each", flush=True)

    async def run(self, platform) -> dict[str, Any]:
        from voxfleet.operator.ownership import MANAGER

        for round_index in range(self.args.rounds):
            batches = {}
            for way in ("create", "apply"):
                namespace = f"bench-{way}-{round_index}"
                await self.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
                batches[way] = [m for i in range(self.args.agents) for m in agent_objects(i, namespace, platform)]
            ways = ("create", "apply") if round_index % 2 == 0 else ("apply", "create")
            print(f"round {round_index + 1}/{self.args.rounds} ({' first, then '.join(ways)})", flush=True)
            for way in ways:
                if way == "create":
                    calls = [self.client.create(m, field_manager=MANAGER) for m in batches[way]]
                else:
                    calls = [self.client.apply(m, field_manager=MANAGER) for m in batches[way]]
                await self._measured(way, len(batches[way]), calls)
            await self._measured("no-op apply", len(batches["apply"]),
                                 [self.client.apply(m, field_manager=MANAGER) for m in batches["apply"]])
            config_maps = [m for m in batches["create"] if m["kind"] == "ConfigMap"]
            await self._measured("merge patch", len(config_maps), [self.client.merge_patch(
                "ConfigMap", m["metadata"]["name"], {"metadata": {"annotations": {"bench/round": str(round_index)}}},
                m["metadata"]["namespace"]) for m in config_maps])
            # The VoiceAgent's own writes: its schema and CEL rules are checked on each (both scale-run worlds get
            # the user's 5,000 creates; the operator's 2 status writes per agent are what the floor has none of).
            namespace = f"bench-create-{round_index}"
            await self._measured("agent create", self.args.agents, [self.client.create(
                voice_agent(i, namespace)) for i in range(self.args.agents)])
            for step, ready in enumerate((False, True)):
                await self._measured(f"status patch {step + 1}", self.args.agents, [self.client.merge_patch(
                    "VoiceAgent", f"agent-{i:04d}", {"status": agent_status_of(ready)}, namespace,
                    subresource="status") for i in range(self.args.agents)])
        return self.figures()

    def figures(self) -> dict[str, Any]:
        def median(values: list[float]) -> float:
            ordered = sorted(values)
            return ordered[len(ordered) // 2]

        results: dict[str, Any] = {"agents": self.args.agents, "rounds": self.args.rounds,
                                   "objects_per_round": self.args.agents * (2 + 2 * len(REGIONS)),
                                   "concurrency": self.args.concurrency}
        for way in self.spent:
            key = way.replace(" ", "_").replace("-", "_")
            results[f"{key}_cpu_ms_per_object"] = round(1000 * median(self.spent[way]), 3)
            results[f"{key}_wall_ms_per_object"] = round(1000 * median(self.wall[way]), 3)
        # Per round, so a noisy round shifts both sides of its own ratio.
        ratios = [a / c for a, c in zip(self.spent["apply"], self.spent["create"]) if c > 0]
        results["apply_vs_create_cpu"] = round(median(ratios), 3)
        results["apply_vs_create_cpu_per_round"] = [round(r, 3) for r in ratios]
        results["load_average_at_end"] = round(os.getloadavg()[0], 1)
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=300, help="agents per round and way (8 objects each)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32, help="writes in flight at once")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from voxfleet.api.settings import PlatformSettings
    from voxfleet.kube.client import KubeClient
    from voxfleet.world.access import Cluster
    from voxfleet.world.world import World

    world = World(Path(tempfile.mkdtemp(prefix="voxfleet-bench-world-")))
    info = world.start(progress=lambda message: print(f"[world] {message}", flush=True))
    try:
        cluster = Cluster.of(info)
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))
        async def run() -> dict[str, Any]:
            client = KubeClient.from_kubeconfig(info.kubeconfig, max_connections=args.concurrency)
            try:
                return await Bench(args, client, info.pids).run(PlatformSettings(_env_file=None))
            finally:
                await client.aclose()

        results = asyncio.run(run())
    finally:
        world.stop()
    print(f"server-side apply of a new object: {results['apply_cpu_ms_per_object']:.2f} ms apiserver+etcd CPU, a"
          f" create {results['create_cpu_ms_per_object']:.2f} ms: {results['apply_vs_create_cpu']:.2f}x (per round"
          f" {results['apply_vs_create_cpu_per_round']}); a no-op apply {results['no_op_apply_cpu_ms_per_object']:.2f}"
          f" ms, a merge patch {results['merge_patch_cpu_ms_per_object']:.2f} ms; a VoiceAgent create"
          f" {results['agent_create_cpu_ms_per_object']:.2f} ms, its status patches"
          f" {results['status_patch_1_cpu_ms_per_object']:.2f} and {results['status_patch_2_cpu_ms_per_object']:.2f} ms")
    print(json.dumps({"bench": "apply_cost", **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
