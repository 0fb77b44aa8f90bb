"""A real `voxfleet worker` subprocess for tests and benchmarks, and what it takes to dispatch calls to it.

    worker = WorkerUnderTest.start(tmp_path, spec, region=lk)     # waits for /readyz
    session = worker.dispatch(room="r1")                          # POST /v1/dispatch with a minted agent token
    ...
    worker.terminate(); worker.wait()                             # SIGTERM -> drain -> exit code
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.callers.caller_bot import mint_token

TOKEN = "test-worker-token-" + "x" * 24
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_config(spec: dict[str, Any], *, tenant: str = "acme", agent: str = "concierge",
                 **resolved: Any) -> dict[str, Any]:
    """The WorkerConfig JSON; `resolved` holds what the operator adds beside the spec (e.g. memoryRecycleMb)."""
    return {"tenant": tenant, "agent": agent, "namespace": f"tenant-{tenant}", "generation": 1, "spec": spec,
            **resolved}


def offline_spec(**overrides: Any) -> dict[str, Any]:
    """A small offline agent (PocketSphinx, scripted, eSpeak) with the speech-timeout detector."""
    spec: dict[str, Any] = {
        "greeting": "Hello, thank you for calling. How can I help you today?",
        "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                     "tts": {"provider": "espeak", "voice": "en-us"}},
        "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200},
                          "timeouts": {"speechTimeoutMs": 300}},
        "intents": [
            {"name": "hours", "keywords": ["opening hours", "open"],
             "reply": "We are open every day from nine in the morning to six in the evening."},
            {"name": "goodbye", "keywords": ["goodbye"], "reply": "Thanks for calling. Goodbye."},
        ],
        "regions": [{"name": "us-east"}],
        "scaling": {"sessionsPerWorker": 2},
        "limits": {"maxSessionSeconds": 120, "idleTimeoutSeconds": 60},
    }
    spec.update(overrides)
    return spec


@dataclass
class WorkerUnderTest:
    process: subprocess.Popen
    url: str
    livekit: Any  # LiveKitRegion-like: url, api_key, api_secret
    config: dict[str, Any]
    log_path: Path
    sessions: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, directory: Path, spec: dict[str, Any], *, livekit: Any, region: str = "us-east",
              env: dict[str, str] | None = None, wait_ready: float = 60.0, **config_kwargs: Any) -> "WorkerUnderTest":
        config = agent_config(spec, **config_kwargs)
        name = uuid.uuid4().hex[:8]
        config_path = directory / f"agent-{name}.json"
        config_path.write_text(json.dumps(config))
        port = free_port()
        log_path = directory / f"worker-{name}.log"
        environment = {**os.environ, "VOXFLEET_WORKER_TOKEN": TOKEN, "VOXFLEET_AGENT_CONFIG": str(config_path),
                       "VOXFLEET_WORKER_PORT": str(port), "VOXFLEET_BIND_HOST": "127.0.0.1",
                       "VOXFLEET_REGION": region, "VOXFLEET_POD_NAME": f"worker-{name}",
                       "VOXFLEET_OUTBOUND_ALLOWED_CIDRS": '["127.0.0.1/32"]', "VOXFLEET_LOG_FORMAT": "json",
                       **(env or {})}
        with open(log_path, "wb") as log:
            process = subprocess.Popen([str(VENV_BIN / "voxfleet"), "worker"], env=environment, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        worker = cls(process=process, url=f"http://127.0.0.1:{port}", livekit=livekit, config=config,
                     log_path=log_path)
        if wait_ready:
            worker.wait_ready(wait_ready)
        return worker

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.log_tail()}")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def dispatch_body(self, *, room: str, session_id: str | None = None, recovery: bool = False,
                      agent_identity: str | None = None) -> dict[str, Any]:
        session_id = session_id or f"sess-{uuid.uuid4().hex}"
        identity = agent_identity or f"agent-{session_id[-12:]}"
        return {"sessionId": session_id, "tenant": self.config["tenant"], "agent": self.config["agent"],
                "region": "us-east", "room": room, "livekitUrl": self.livekit.url,
                "livekitToken": mint_token(self.livekit, room=room, identity=identity),
                "agentIdentity": identity, "recovery": recovery}

    def dispatch(self, *, room: str, **kwargs: Any) -> httpx.Response:
        body = self.dispatch_body(room=room, **kwargs)
        response = httpx.post(f"{self.url}/v1/dispatch", json=body, headers=self.headers, timeout=10)
        if response.status_code == 201:
            self.sessions.append(body["sessionId"])
        return response

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers, timeout=10)

    def delete(self, path: str) -> httpx.Response:
        return httpx.delete(f"{self.url}{path}", headers=self.headers, timeout=15)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
