"""Two livekit-server instances, one per voice region, side by side on loopback.

Each gets a config file with its own HTTP/WebSocket port, ICE TCP port and single UDP port (UDP mux), and
candidates restricted to 127.0.0.1 on ``lo``, so clients in this machine connect without STUN or TURN.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from . import processes
from .binaries import Binary
from .processes import Server

# Fixed development credentials: the world is local and throwaway, and fixed keys let a second process attach.
API_KEY = "voxfleet-dev-key"
API_SECRET = "voxfleet-dev-secret-0123456789abcdef0123456789"  # livekit wants >= 32 characters

REGIONS = ("us-east", "eu-west")


@dataclass(frozen=True)
class LiveKitRegion:
    region: str
    url: str  # ws://127.0.0.1:<port>: what clients and the gateway use
    http_url: str  # http://127.0.0.1:<port>: the Twirp API (LiveKitAPI accepts either)
    api_key: str
    api_secret: str
    port: int
    rtc_tcp_port: int
    rtc_udp_port: int

    def as_dict(self) -> dict:
        return asdict(self)


def config(port: int, tcp_port: int, udp_port: int) -> dict:
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "rtc": {
            "tcp_port": tcp_port,
            "udp_port": udp_port,
            "node_ip": "127.0.0.1",
            "use_external_ip": False,
            "interfaces": {"includes": ["lo"]},
            "enable_loopback_candidate": True,
        },
        "keys": {API_KEY: API_SECRET},
        "logging": {"level": "info"},
    }


def start(*, binary: Binary, state_dir: Path, world_id: str,
          regions: tuple[str, ...] = REGIONS) -> tuple[list[LiveKitRegion], list[Server]]:
    config_dir = state_dir / "livekit"
    config_dir.mkdir(parents=True, exist_ok=True)
    tcp_ports = processes.free_ports(2 * len(regions))
    udp_ports = processes.free_ports(len(regions), socket.SOCK_DGRAM)
    result, servers = [], []
    for i, region in enumerate(regions):
        port, tcp_port, udp_port = tcp_ports[2 * i], tcp_ports[2 * i + 1], udp_ports[i]
        config_file = config_dir / f"{region}.yaml"
        config_file.write_text(yaml.safe_dump(config(port, tcp_port, udp_port), sort_keys=False))
        servers.append(processes.start(f"livekit-{region}", [str(binary.path), f"--config={config_file}"],
                                       log_dir=state_dir / "logs", world_id=world_id))
        result.append(LiveKitRegion(region=region, url=f"ws://127.0.0.1:{port}", http_url=f"http://127.0.0.1:{port}",
                                    api_key=API_KEY, api_secret=API_SECRET, port=port, rtc_tcp_port=tcp_port,
                                    rtc_udp_port=udp_port))
    return result, servers


def wait_ready(regions: list[LiveKitRegion], servers: list[Server], *, timeout: float = 20.0) -> None:
    # livekit-server answers "OK" on / once its HTTP server is up.
    for region, server in zip(regions, servers):
        processes.wait_until(f"livekit-server {region.region} on {region.http_url}",
                             lambda r=region: httpx.get(r.http_url, timeout=1).status_code == 200,
                             timeout=timeout, servers=[server])
