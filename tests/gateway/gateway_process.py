"""`voxfleet gateway` as a real process on 127.0.0.1 for tests: started with VOXFLEET_* settings, waited for
on /readyz, stopped by its process group; its log file is kept so tests can check what it wrote. `url` is the
tenant API port, `operational_url` the port of /metrics (never the API's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from voxfleet.world import processes

SIGNING_KEY = "test-session-signing-key-0123456789abcdef"
WORKER_TOKEN = "test-worker-token-0123456789"


class GatewayProcess:
    def __init__(self, *, kubeconfig: Path, platform_namespace: str, log_path: Path,
                 regions: dict[str, dict[str, Any]] | None = None, extra_env: dict[str, str] | None = None,
                 database_url: str | None = None):
        self.port = processes.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.operational_port = processes.free_port(other_than=(self.port,))
        self.operational_url = f"http://127.0.0.1:{self.operational_port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "VOXFLEET_PLATFORM_NAMESPACE": platform_namespace,
            "VOXFLEET_WORKER_TOKEN": WORKER_TOKEN,
            "VOXFLEET_SESSION_SIGNING_KEY": SIGNING_KEY,
            "VOXFLEET_REGIONS": json.dumps(regions or {}),
            "VOXFLEET_LOG_FORMAT": "json",
            "VOXFLEET_LOG_LEVEL": "debug",
            "VOXFLEET_ACCESS_LOG": "true",
            # The store (the `database` fixture's URL); without it the gateway answers history, webhooks and
            # usage with 503 database_not_configured. Not inherited from the test process's environment.
            "VOXFLEET_DATABASE_URL": database_url or "",
            **(extra_env or {}),
        }
        self.argv = [sys.executable, "-m", "voxfleet.gateway.main", "--host", "127.0.0.1", "--port", str(self.port),
                     "--operational-port", str(self.operational_port), "--kubeconfig", str(kubeconfig)]
        self.popen: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "GatewayProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.popen.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway not ready within {timeout:.0f} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        except ProcessLookupError:
            pass

    def metrics(self) -> str:
        """The Prometheus exposition, from the operational port."""
        return httpx.get(f"{self.operational_url}/metrics", timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
