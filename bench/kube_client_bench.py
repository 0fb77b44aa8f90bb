"""Kubernetes client candidates against the world's real apiserver: server-side apply, get, list and watch
throughput and latency, each client in its library's ordinary way (models where the library has them).

How voxfleet.kube's library was chosen (kube/README.md, docs/architecture.md). Candidates other than
voxfleet.kube are measured when installed (they are not dependencies): run it from a scratch venv that has them,
e.g. `python -m venv /tmp/kb && /tmp/kb/bin/pip install kubernetes_asyncio lightkube kr8s`, with this checkout's
venv on its path (a .pth file), then:

    VOXFLEET_WORLD_DIR=/work/team/world /tmp/kb/bin/python bench/kube_client_bench.py --objects 200
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import statistics
import time
import uuid
from pathlib import Path

from voxfleet.kube.client import KubeClient
from voxfleet.world.world import WorldInfo

CONCURRENCY = 16


def _configmap(namespace: str, name: str, round_: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                  "labels": {"bench": "kube-client"}},
            "data": {"round": str(round_), "text": "voxfleet " * 120}}


# --- one adapter per candidate: apply(manifest), get(name), list() -> count, watch(rv, n) -> events ------------

class Voxfleet:
    name = "voxfleet.kube (aiohttp, dicts)"

    async def open(self, kubeconfig: str, namespace: str) -> None:
        self.ns, self.kube = namespace, KubeClient.from_kubeconfig(kubeconfig)

    async def apply(self, manifest: dict) -> None:
        await self.kube.apply(manifest, field_manager="bench")

    async def get(self, name: str) -> None:
        await self.kube.get("ConfigMap", name, self.ns)

    async def list(self) -> tuple[int, str]:
        listing = await self.kube.list("ConfigMap", self.ns, label_selector="bench=kube-client")
        return len(listing["items"]), listing["metadata"]["resourceVersion"]

    async def watch(self, rv: str, count: int) -> None:
        seen = 0
        async for event in self.kube.watch("ConfigMap", self.ns, resource_version=rv,
                                           label_selector="bench=kube-client"):
            if event.type == "MODIFIED":
                seen += 1
                if seen == count:
                    return

    async def close(self) -> None:
        await self.kube.aclose()


class KubernetesAsyncio:
    name = "kubernetes_asyncio (aiohttp, models)"

    async def open(self, kubeconfig: str, namespace: str) -> None:
        from kubernetes_asyncio import client, config

        self.ns = namespace
        configuration = client.Configuration()
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 64
        self.api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(self.api_client)

    async def apply(self, manifest: dict) -> None:
        meta = manifest["metadata"]
        await self.core.patch_namespaced_config_map(meta["name"], self.ns, manifest, field_manager="bench",
                                                    force=True, _content_type="application/apply-patch+yaml")

    async def get(self, name: str) -> None:
        await self.core.read_namespaced_config_map(name, self.ns)

    async def list(self) -> tuple[int, str]:
        listing = await self.core.list_namespaced_config_map(self.ns, label_selector="bench=kube-client")
        return len(listing.items), listing.metadata.resource_version

    async def watch(self, rv: str, count: int) -> None:
        from kubernetes_asyncio import watch

        seen = 0
        async with watch.Watch() as stream:
            async for event in stream.stream(self.core.list_namespaced_config_map, self.ns, resource_version=rv,
                                             label_selector="bench=kube-client"):
                if event["type"] == "MODIFIED":
                    seen += 1
                    if seen == count:
                        return

    async def close(self) -> None:
        await self.api_client.close()


class Lightkube:
    name = "lightkube (httpx, models)"

    async def open(self, kubeconfig: str, namespace: str) -> None:
        from lightkube import AsyncClient, KubeConfig
        from lightkube.resources.core_v1 import ConfigMap

        self.ns, self.ConfigMap = namespace, ConfigMap
        self.client = AsyncClient(KubeConfig.from_file(kubeconfig), field_manager="bench")

    async def apply(self, manifest: dict) -> None:
        await self.client.apply(self.ConfigMap.from_dict(manifest), force=True)

    async def get(self, name: str) -> None:
        await self.client.get(self.ConfigMap, name, namespace=self.ns)

    async def list(self) -> tuple[int, str]:
        items = self.client.list(self.ConfigMap, namespace=self.ns, labels={"bench": "kube-client"})
        count = len([item async for item in items])
        return count, items.resourceVersion

    async def watch(self, rv: str, count: int) -> None:
        seen = 0
        async for op, _ in self.client.watch(self.ConfigMap, namespace=self.ns, resource_version=rv,
                                             labels={"bench": "kube-client"}):
            if op == "MODIFIED":
                seen += 1
                if seen == count:
                    return

    async def close(self) -> None:
        await self.client.close()


class Kr8s:
    name = "kr8s (httpx, objects)"

    async def open(self, kubeconfig: str, namespace: str) -> None:
        import kr8s.asyncio

        self.ns = namespace
        self.api = await kr8s.asyncio.api(kubeconfig=kubeconfig)

    async def apply(self, manifest: dict) -> None:
        meta = manifest["metadata"]
        async with self.api.call_api("PATCH", version="v1", namespace=self.ns, url=f"configmaps/{meta['name']}",
                                     params={"fieldManager": "bench", "force": "true"},
                                     headers={"Content-Type": "application/apply-patch+yaml"},
                                     content=json.dumps(manifest)):
            pass

    async def get(self, name: str) -> None:
        from kr8s.asyncio.objects import ConfigMap

        await ConfigMap.get(name, namespace=self.ns, api=self.api)

    async def list(self) -> tuple[int, str]:
        items = [item async for item in self.api.async_get("configmaps", namespace=self.ns,
                                                            label_selector="bench=kube-client")]
        return len(items), ""

    async def watch(self, rv: str, count: int) -> None:
        seen = 0
        async for op, _ in self.api.watch("configmaps", namespace=self.ns, label_selector="bench=kube-client",
                                          since=rv):
            if op == "MODIFIED":
                seen += 1
                if seen == count:
                    return

    async def close(self) -> None:
        pass


CANDIDATES = [(Voxfleet, None), (KubernetesAsyncio, "kubernetes_asyncio"), (Lightkube, "lightkube"),
              (Kr8s, "kr8s")]


async def _timed_all(operations, concurrency: int) -> tuple[float, list[float]]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(operation):
        async with semaphore:
            started = time.perf_counter()
            await operation()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(op) for op in operations))
    return time.perf_counter() - started, latencies


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def run_one(candidate, kubeconfig: str, namespace: str, objects: int, round_: int) -> dict:
    client = candidate()
    await client.open(kubeconfig, namespace)
    names = [f"cm-{i}" for i in range(objects)]
    cpu0 = time.process_time()
    apply_s, apply_ms = await _timed_all([lambda n=n: client.apply(_configmap(namespace, n, round_)) for n in names],
                                         CONCURRENCY)
    get_s, get_ms = await _timed_all([lambda n=n: client.get(n) for n in names], CONCURRENCY)
    list_ms = []
    for _ in range(10):
        started = time.perf_counter()
        count, rv = await client.list()
        list_ms.append((time.perf_counter() - started) * 1000)
        assert count == objects, (candidate.name, count)
    # watch: the events of `objects` updates (written by voxfleet.kube, the same for everyone) arrive.
    writer = KubeClient.from_kubeconfig(kubeconfig)
    watcher = asyncio.create_task(client.watch(rv, objects))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def update(n):
        async with sem:
            await writer.apply(_configmap(namespace, n, round_ + 1000), field_manager="bench-writer")

    await asyncio.gather(*(update(n) for n in names))
    written = time.perf_counter() - started
    await asyncio.wait_for(watcher, 60)
    watch_s = time.perf_counter() - started
    await writer.aclose()
    cpu = time.process_time() - cpu0
    await client.close()
    return {"client": candidate.name, "apply_per_s": objects / apply_s, "apply_p50_ms": statistics.median(apply_ms),
            "apply_p99_ms": _p(apply_ms, 0.99), "get_per_s": objects / get_s, "get_p50_ms": statistics.median(get_ms),
            "list_p50_ms": statistics.median(list_ms), "watch_lag_ms": (watch_s - written) * 1000,
            "cpu_s": cpu}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    info = WorldInfo.load(Path(os.environ.get("VOXFLEET_WORLD_DIR", "/work/team/world")))
    kubeconfig = str(info.kubeconfig)
    admin = KubeClient.from_kubeconfig(kubeconfig)
    namespace = f"kube-bench-{uuid.uuid4().hex[:6]}"
    await admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    available = [c for c, module in CANDIDATES if module is None or importlib.util.find_spec(module)]
    results: dict[str, list[dict]] = {}
    try:
        for round_ in range(args.rounds):  # interleaved, so a busy moment on the machine hits every client
            for candidate in available:
                result = await run_one(candidate, kubeconfig, namespace, args.objects, round_ * 10 + 1)
                results.setdefault(candidate.name, []).append(result)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}),
                      flush=True)
    finally:
        await admin.delete("Namespace", namespace)
        await admin.aclose()
    print(f"\n{args.objects} ConfigMaps, {CONCURRENCY} concurrent, best of {args.rounds} rounds "
          f"(load average {os.getloadavg()[0]:.1f}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)")
    print(f"{'client':40} {'apply/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'get/s':>7} {'get p50':>8} {'list ms':>8} "
          f"{'watch lag ms':>12} {'cpu s':>6}")
    for name, rows in results.items():
        best = {key: (max if key.endswith("per_s") else min)(r[key] for r in rows) for key in rows[0] if key != "client"}
        print(f"{name:40} {best['apply_per_s']:8.0f} {best['apply_p50_ms']:7.1f} {best['apply_p99_ms']:7.1f} "
              f"{best['get_per_s']:7.0f} {best['get_p50_ms']:8.1f} {best['list_p50_ms']:8.1f} "
              f"{best['watch_lag_ms']:12.0f} {best['cpu_s']:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
