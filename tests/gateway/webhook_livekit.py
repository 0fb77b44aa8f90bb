"""A livekit-server of the gateway tests' own, configured to send its webhooks to a gateway (the world's two
LiveKits send none), with its own API key so the gateway must pick the right key to verify."""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from voxfleet.world import binaries, livekit, processes

API_KEY = "webhook-test-key"
API_SECRET = "webhook-test-secret-0123456789abcdef0123456789"


@dataclass
class WebhookLiveKit:
    url: str
    http_url: str
    api_key: str
    api_secret: str
    server: processes.Server

    def stop(self) -> None:
        processes.stop_group(self.server.pid)


def start(*, webhook_url: str, state_dir: Path, world_id: str, attempts: int = 3) -> WebhookLiveKit:
    """Start it on free ports (again on fresh ones if another process took a port in the meantime)."""
    for attempt in range(attempts):
        try:
            return _start(webhook_url=webhook_url, state_dir=state_dir, world_id=world_id)
        except processes.ServerFailed:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")


def _start(*, webhook_url: str, state_dir: Path, world_id: str) -> WebhookLiveKit:
    port, tcp_port = processes.free_ports(2)
    udp_port = processes.free_port(socket.SOCK_DGRAM)
    config = livekit.config(port, tcp_port, udp_port)
    config["keys"] = {API_KEY: API_SECRET}
    config["webhook"] = {"api_key": API_KEY, "urls": [webhook_url]}
    name = f"livekit-webhooks-{uuid.uuid4().hex[:6]}"
    config_file = state_dir / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    server = processes.start(name, [str(binaries.find("livekit-server").path), f"--config={config_file}"],
                             log_dir=state_dir, world_id=world_id)
    http_url = f"http://127.0.0.1:{port}"
    processes.wait_until(f"{name} on {http_url}", lambda: httpx.get(http_url, timeout=1).status_code == 200,
                         timeout=20, servers=[server])
    return WebhookLiveKit(url=f"ws://127.0.0.1:{port}", http_url=http_url, api_key=API_KEY, api_secret=API_SECRET,
                          server=server)
