"""Every component's /metrics carries `voxfleet_build_info{component, version, python_version} 1` and the standard
process, platform and garbage-collector collectors: a real `voxfleet gateway` (its operational port), a real
`voxfleet operator` and a real `voxfleet worker`, each read over HTTP as Prometheus reads them and parsed with
prometheus_client's own exposition parser. (The dashboard test also has Prometheus scrape the gateway and a
worker pod and query voxfleet_build_info.)"""

from __future__ import annotations

import base64
import platform
import time
import uuid

import httpx
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.gateway_process import GatewayProcess
from tests.operator.operator_process import WORKER_TOKEN, OperatorProcess
from tests.worker.worker_harness import WorkerUnderTest, offline_spec
from voxfleet.telemetry.build_info import voxfleet_version

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

STANDARD = ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
            "python_info", "python_gc_objects_collected", "python_gc_collections")


def samples(url: str) -> dict[str, list]:
    text = httpx.get(url, timeout=5).text
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, []).extend(family.samples)
    return found


def wait_serving(operator: OperatorProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert operator.alive(), f"operator exited:\n{operator.log()[-3000:]}"
        try:
            if httpx.get(f"{operator.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"operator not serving after {timeout:.0f} s:\n{operator.log()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture
def platform_namespace(kube, installed_crds):
    name = kube.new_namespace("vfmet")
    with kube.api_client() as api:  # what the operator reads at start: the platform's worker-token root
        client.CoreV1Api(api).create_namespaced_secret(name, {
            "metadata": {"name": "voxfleet-worker-token"},
            "data": {"token": base64.b64encode(WORKER_TOKEN.encode()).decode()}})
    yield name
    kube.delete_namespace(name)


def test_every_component_exports_build_info_and_the_standard_collectors(kube, livekit, platform_namespace,
                                                                        tmp_path):
    # All three start at once (each waits for its own readiness), so the test costs the slowest start only.
    worker = WorkerUnderTest.start(tmp_path, offline_spec(), livekit=livekit["us-east"], wait_ready=0)
    operator = OperatorProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                               shard=f"s{uuid.uuid4().hex[:8]}", log_path=tmp_path / "operator.log")
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=tmp_path / "gateway.log")
    try:
        operator.launch()
        gateway.start()
        wait_serving(operator)
        worker.wait_ready()
        endpoints = {"gateway": f"{gateway.operational_url}/metrics", "operator": f"{operator.url}/metrics",
                     "worker": f"{worker.url}/metrics"}
        read = {component: samples(url) for component, url in endpoints.items()}
    finally:
        for process in (worker, operator, gateway):
            if process is not None:
                process.stop()
    for component, found in read.items():
        info = [s.labels for s in found.get("voxfleet_build_info", []) if s.value == 1]
        assert info == [{"component": component, "version": voxfleet_version(),
                         "python_version": platform.python_version()}], (component, info)
        missing = [name for name in STANDARD if name not in found]
        assert not missing, f"{component} lacks {missing}"
        rss = found["process_resident_memory_bytes"][0].value
        assert rss > 10e6, (component, rss)  # a real Python process, read from its own /proc
        print(f"{component}: build {info[0]['version']} on Python {info[0]['python_version']},"
              f" RSS {rss / 1e6:.0f} MB, CPU {found['process_cpu_seconds'][0].value:.1f} s,"
              f" {len(found)} metric families")
