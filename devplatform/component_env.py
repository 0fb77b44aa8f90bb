"""The settings `voxfleet dev` gives the operator and the gateway it starts, as the environment variables of their
documented settings (voxfleet.api.settings, the gateway's and operator's own), derived from the running world.

Pure: world facts and fresh secrets in, environment out, so what the local platform configures can be read and
tested without starting anything.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from voxfleet.api.settings import ENV_PREFIX
from voxfleet.world import topology
from voxfleet.world.world import WorldInfo

PLATFORM_NAMESPACE = "voxfleet-system"
# The demo tool server listens on loopback; tenant URLs may reach nothing private unless the platform allows it.
OUTBOUND_ALLOWED_CIDRS = ["127.0.0.1/32"]
DEFAULT_CALLER_REGION = "us-east"
DATABASE_NAME = "voxfleet"  # the store's database on the world's PostgreSQL
# Round trips between the world's regions (ms): enough for the gateway to order regions by distance.
LATENCY_MS = {
    "us-east": {"us-east": 5, "eu-west": 80, "ap-south": 190},
    "eu-west": {"eu-west": 5, "us-east": 80, "ap-south": 120},
    "ap-south": {"ap-south": 5, "eu-west": 120, "us-east": 190},
}


@dataclass(frozen=True)
class DevSecrets:
    """Made fresh for every run: nothing of one local platform works against another."""
    worker_token: str
    session_signing_key: str

    @classmethod
    def generate(cls) -> "DevSecrets":
        return cls(worker_token=secrets.token_urlsafe(32), session_signing_key=secrets.token_urlsafe(48))


def platform_env(world: WorldInfo, dev_secrets: DevSecrets) -> dict[str, str]:
    """What operator, gateway and (through the operator) workers share: placement on the runner nodes, the worker
    token, the outbound allow-list, readable logs."""
    return {
        f"{ENV_PREFIX}PLATFORM_NAMESPACE": PLATFORM_NAMESPACE,
        f"{ENV_PREFIX}WORKER_NODE_SELECTOR": json.dumps(topology.RUNNER_NODE_SELECTOR),
        f"{ENV_PREFIX}WORKER_TOLERATIONS": json.dumps(topology.RUNNER_TOLERATIONS),
        f"{ENV_PREFIX}WORKER_TOKEN": dev_secrets.worker_token,
        f"{ENV_PREFIX}OUTBOUND_ALLOWED_CIDRS": json.dumps(OUTBOUND_ALLOWED_CIDRS),
        f"{ENV_PREFIX}LOG_FORMAT": "console",
        "KUBECONFIG": world.kubeconfig,
    }


def operator_env(world: WorldInfo, dev_secrets: DevSecrets, *, http_port: int) -> dict[str, str]:
    return {
        **platform_env(world, dev_secrets),
        f"{ENV_PREFIX}OPERATOR_HTTP_HOST": "127.0.0.1",
        f"{ENV_PREFIX}OPERATOR_HTTP_PORT": str(http_port),
    }


def gateway_regions(world: WorldInfo) -> dict[str, dict[str, str]]:
    """Region -> the LiveKit that serves it, from the world's livekit-servers (the gateway mints tokens for it)."""
    return {region["region"]: {"url": region["url"], "apiUrl": region["http_url"], "apiKey": region["api_key"],
                               "apiSecret": region["api_secret"]}
            for region in world.livekit}


def gateway_env(world: WorldInfo, dev_secrets: DevSecrets, *, port: int, operational_port: int,
                database_url: str | None = None) -> dict[str, str]:
    regions = gateway_regions(world)
    store = {f"{ENV_PREFIX}DATABASE_URL": database_url} if database_url else {}
    return {
        **store,
        **platform_env(world, dev_secrets),
        f"{ENV_PREFIX}HOST": "127.0.0.1",
        f"{ENV_PREFIX}PORT": str(port),
        f"{ENV_PREFIX}OPERATIONAL_PORT": str(operational_port),  # /metrics: not on the tenant API's port
        f"{ENV_PREFIX}KUBECONFIG": world.kubeconfig,
        f"{ENV_PREFIX}REGIONS": json.dumps(regions),
        f"{ENV_PREFIX}LATENCY_MS": json.dumps(LATENCY_MS),
        f"{ENV_PREFIX}DEFAULT_CALLER_REGION": DEFAULT_CALLER_REGION if DEFAULT_CALLER_REGION in regions
        else next(iter(regions), DEFAULT_CALLER_REGION),
        f"{ENV_PREFIX}SESSION_SIGNING_KEY": dev_secrets.session_signing_key,
    }


def worker_token_secret(dev_secrets: DevSecrets, *, name: str = "voxfleet-worker-token") -> dict:
    """The platform's root worker token (only the operator and gateway read it): the operator writes each tenant
    namespace a token derived from it (voxfleet.api.worker_credentials), never this one."""
    from voxfleet.api import labels

    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": PLATFORM_NAMESPACE},
            "stringData": {labels.WORKER_TOKEN_KEY: dev_secrets.worker_token}}
