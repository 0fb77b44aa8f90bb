"""The platform pieces `voxfleet eval` talks to, assembled on the shared test world: a real `voxfleet gateway`
process, a tenant with an API key, agents created through the gateway's agents API, real `voxfleet worker` pods
on the runner nodes (made directly, as the operator would make them), and a real HTTP tool server that logs
every request (the order lookup of the offline demo, with an optional delay).

    platform = EvalPlatform.start(kube, pods, livekit, tmp_dir)
    platform.deploy("concierge", spec, workers=1)               # PUT /v1/agents/concierge + Ready worker pods
    result = platform.eval(suite_path, "--report", ...)        # `voxfleet eval` as a subprocess
    platform.stop()
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fakes.http_server import LocalHTTPServer, Reply, Request
from tests.gateway import worker_pods
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import TenantUnderTest, create_tenant, delete_tenant
from voxfleet.devplatform.demo_tools import lookup
from voxfleet.world.access import Cluster, RunnerPool

REPO = Path(__file__).resolve().parents[2]
VOXFLEET = str(Path(sys.executable).with_name("voxfleet"))
REGION = "us-east"
EVAL_TIMEOUT_S = 600


class OrderTool:
    """The offline demo's order lookup over real HTTP; ``delay_s`` makes it a slow tool."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self.server = LocalHTTPServer(self._handle)

    def _handle(self, request: Request) -> Reply:
        try:
            order_id = str(request.json().get("order_id"))
            return Reply(200, lookup(order_id), delay_s=self.delay_s)
        except (ValueError, AttributeError):
            return Reply(422, {"code": "invalid_order_id", "message": "order_id must be digits"})

    @property
    def url(self) -> str:
        return f"{self.server.url}/orders/lookup"

    def order_ids(self) -> list[str]:
        """Every order_id the tool server was asked about, in order: its own log of requests."""
        return [str(r.json().get("order_id")) for r in self.server.calls("/orders/lookup")]


@dataclass
class EvalPlatform:
    kube: Cluster
    pods: RunnerPool
    gateway: GatewayProcess
    tenant: TenantUnderTest
    platform_namespace: str
    tool: OrderTool
    work_dir: Path
    workers: dict[str, list[str]] = field(default_factory=dict)  # agent -> pod IPs

    @classmethod
    def start(cls, kube: Cluster, pods: RunnerPool, livekit: dict, work_dir: Path) -> "EvalPlatform":
        platform_namespace = kube.new_namespace("vfeval")
        gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                                 log_path=work_dir / "gateway.log", regions=livekit_regions(livekit),
                                 extra_env=session_gateway_env(VOXFLEET_LOG_LEVEL="info",
                                                               # the eval tool server listens on 127.0.0.1
                                                               VOXFLEET_OUTBOUND_ALLOWED_CIDRS='["127.0.0.1/32"]'),
                                 ).start()
        tenant = create_tenant(kube, platform_namespace, allowed_regions=[REGION], prefix="ev",
                               quotas={"maxConcurrentSessions": 40})
        # The key and the Tenant reach the gateway through two watches, in either order: until it has seen both,
        # the key is a tenant it does not serve (403). Wait for that, as a careful client would.
        deadline = time.monotonic() + 30
        while httpx.get(f"{gateway.url}/v1/agents", headers=tenant.headers(), timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the gateway never served the new tenant's key"
            time.sleep(0.05)
        tool = OrderTool()
        tool.server.start()
        return cls(kube=kube, pods=pods, gateway=gateway, tenant=tenant, platform_namespace=platform_namespace,
                   tool=tool, work_dir=work_dir)

    def stop(self) -> None:
        self.gateway.stop()
        self.tool.server.stop()
        delete_tenant(self.kube, self.tenant)
        self.kube.delete_namespace(self.platform_namespace)

    def deploy(self, agent: str, spec: dict[str, Any], *, workers: int = 1, timeout: float = 120.0) -> list[str]:
        """Create the agent through the gateway and start its worker pods; returns their IPs once Ready."""
        with httpx.Client(base_url=self.gateway.url, headers=self.tenant.headers(), timeout=15) as http:
            response = http.put(f"/v1/agents/{agent}", json=spec)
            assert response.status_code in (200, 201), response.text
        config_map = f"{agent}-config"
        manifests = [worker_pods.agent_config_map(self.tenant.namespace, config_map, tenant=self.tenant.name,
                                                  agent=agent, spec=spec)]
        manifests += [worker_pods.real_worker_pod(
            self.pods, tenant=self.tenant.name, agent=agent, region=REGION, namespace=self.tenant.namespace,
            config_map=config_map, name=f"{agent}-{i}",
            extra_env={"VOXFLEET_OUTBOUND_ALLOWED_CIDRS": '["127.0.0.1/32"]'}) for i in range(workers)]
        names = worker_pods.create(self.kube, self.tenant.namespace, manifests)
        ips = worker_pods.wait_ready(self.kube, self.tenant.namespace, names, timeout=timeout, pods=self.pods)
        self.workers[agent] = list(ips.values())
        return self.workers[agent]

    def eval_command(self, suite: Path, *args: str) -> tuple[list[str], dict[str, str]]:
        """`voxfleet eval` as a user runs it; the key goes by environment variable, never on the command line."""
        env = {**os.environ, "VOXFLEET_API_KEY": self.tenant.key, "VOXFLEET_DEV_DIR": str(self.work_dir / "no-dev")}
        return [VOXFLEET, "eval", str(suite), "--gateway", self.gateway.url, "--color", "never", *args], env

    def eval(self, suite: Path, *args: str, timeout: float = EVAL_TIMEOUT_S) -> subprocess.CompletedProcess:
        argv, env = self.eval_command(suite, *args)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    def worker_metric(self, agent: str, name: str) -> float:
        """Sum of one sample (e.g. voxfleet_worker_ttfa_seconds_count) over the agent's worker pods."""
        total = 0.0
        for ip in self.workers[agent]:
            for line in httpx.get(f"http://{ip}:8080/metrics", timeout=5).text.splitlines():
                if line.startswith(name + "{") and f'agent="{agent}"' in line:
                    total += float(line.rsplit(" ", 1)[1])
        return total


def offline_demo_spec(tool_url: str, **changes: Any) -> dict[str, Any]:
    """examples/offline-demo.yaml's spec, pointed at the test's tool server and run in one region."""
    document = yaml.safe_load((REPO / "examples" / "offline-demo.yaml").read_text())
    spec = copy.deepcopy(document["spec"])
    for tool in spec["tools"]:
        tool["http"]["url"] = tool_url
    spec["regions"] = [{"name": REGION, "minWorkers": 0, "maxWorkers": 4}]
    spec.update(changes)
    return spec


def write_suite(path: Path, suite: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def read_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def wait_for(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
