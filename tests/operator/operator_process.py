"""`voxfleet operator` as a real process for tests: its own platform namespace and tenant shard (so operators of
parallel test modules never touch each other's Tenants), stand-in workers as the pods' command, SIGTERM or
SIGKILL on demand, and its /metrics read as the outside world would."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.world import processes, topology

STANDIN_WORKER = Path(__file__).with_name("standin_worker.py")
WORKER_TOKEN = "operator-tests-worker-token-0123456789"  # the platform's root (its namespace's Secret)


def worker_headers(namespace: str) -> dict[str, str]:
    """What a worker in `namespace` accepts: the token the operator derives from the root for that namespace."""
    return {"Authorization": f"Bearer {token_for_namespace(WORKER_TOKEN, namespace)}"}
SHARD_LABEL = "voxfleet.dev/test-shard"


class OperatorProcess:
    def __init__(self, *, kubeconfig: Path, platform_namespace: str, shard: str, log_path: Path,
                 real_workers: bool = True, identity: str = "op-1", extra_env: dict[str, str] | None = None):
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        placement = {}
        if real_workers:  # the pod runner's nodes: worker pods run as real processes there
            placement = {"VOXFLEET_WORKER_NODE_SELECTOR": json.dumps(topology.RUNNER_NODE_SELECTOR),
                         "VOXFLEET_WORKER_TOLERATIONS": json.dumps(topology.RUNNER_TOLERATIONS)}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VOXFLEET_")},
            "VOXFLEET_PLATFORM_NAMESPACE": platform_namespace,
            "VOXFLEET_WORKER_COMMAND": json.dumps([sys.executable, str(STANDIN_WORKER)]),
            "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": json.dumps(["127.0.0.1/32"]),
            "VOXFLEET_LOG_FORMAT": "json",
            "VOXFLEET_LOG_LEVEL": "info",
            "VOXFLEET_OPERATOR_POLL_INTERVAL_SECONDS": "1",
            "VOXFLEET_OPERATOR_STATUS_FIGURES_INTERVAL_SECONDS": "1",
            "VOXFLEET_OPERATOR_STATUS_WORDING_DELAY_SECONDS": "1",
            "VOXFLEET_OPERATOR_RECHECK_SECONDS": "2",
            "VOXFLEET_OPERATOR_LEASE_DURATION_SECONDS": "4",
            "VOXFLEET_OPERATOR_LEASE_RENEW_SECONDS": "1",
            "VOXFLEET_OPERATOR_RECONCILE_WORKERS": "4",
            **placement,
            **(extra_env or {}),
        }
        self.argv = [sys.executable, "-m", "voxfleet.cli", "operator", "--kubeconfig", str(kubeconfig),
                     "--http-host", "127.0.0.1", "--http-port", str(self.port), "--identity", identity,
                     "--tenant-selector", f"{SHARD_LABEL}={shard}"]
        self.popen: subprocess.Popen | None = None

    def launch(self) -> "OperatorProcess":
        """Start, without waiting for anything (a crash test's process may be gone before it serves)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        return self

    def start(self, *, wait_leader: bool = True, timeout: float = 60.0) -> "OperatorProcess":
        """Start and wait until it serves /healthz (and, by default, leads)."""
        self.launch()
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"operator exited with {self.popen.returncode}:\n{self.log()[-4000:]}")
            try:
                serving = httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
                if serving and (not wait_leader or (self.metric("voxfleet_operator_leader") == 1
                                                    and "operator leading" in self.log())):
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"operator not leading within {timeout:.0f} s:\n{self.log()[-4000:]}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL: no cleanup, no Lease release, exactly like an OOM kill or a node loss."""
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching the labels (0 if none)."""
        total = 0.0
        for line in self.metrics().splitlines():
            match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
            if not match:
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(match.group(2))
        return total
