"""The platform the end-to-end and chaos tests run calls through: a gateway whose us-east LiveKit is one of its
own that sends it webhooks (a caller's hang-up or an agent's departure reaches the gateway at once; eu-west is
the world's), and an operator running real `voxfleet worker` processes, in a platform namespace holding the root
worker token.

    with platform_namespace(kube, "vfchaos") as namespace:
        with gateway_and_operator(kube, namespace, livekit, world, logs) as (gateway, lk, fleet):
            ...
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client

from tests.gateway import webhook_livekit
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import WORKER_TOKEN, GatewayProcess
from tests.gateway.tenant_setup import KeyHeaders, create_key, key_headers
from tests.operator.fleet import Fleet
from tests.operator.operator_process import OperatorProcess


@contextmanager
def platform_namespace(kube, prefix: str) -> Iterator[str]:
    """A new platform namespace with the root worker token the operator reads (the gateway gets the same root)."""
    name = kube.new_namespace(prefix)
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_secret(name, {
            "metadata": {"name": "voxfleet-worker-token"},
            "data": {"token": base64.b64encode(WORKER_TOKEN.encode()).decode()}})
    try:
        yield name
    finally:
        kube.delete_namespace(name)


@contextmanager
def gateway_and_operator(kube, namespace: str, livekit, world, logs: Path, *, database_url: str | None = None,
                         gateway_env: dict[str, str] | None = None
                         ) -> Iterator[tuple[GatewayProcess, webhook_livekit.WebhookLiveKit, Fleet]]:
    """``database_url``: the gateway's store (call history, reports, webhooks); ``gateway_env``: more settings."""
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=namespace, log_path=logs / "gateway.log",
                             database_url=database_url)
    lk = webhook_livekit.start(webhook_url=f"{gateway.url}/livekit/webhook/us-east", state_dir=logs,
                               world_id=world.world_id)
    regions = livekit_regions(livekit)
    regions["us-east"] = {"url": lk.url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}
    gateway.env.update(session_gateway_env(VOXFLEET_REGIONS=json.dumps(regions), **(gateway_env or {})))
    gateway.start()
    shard = f"s{uuid.uuid4().hex[:8]}"
    operator = OperatorProcess(
        kubeconfig=kube.kubeconfig, platform_namespace=namespace, shard=shard, log_path=logs / "operator.log",
        extra_env={"VOXFLEET_WORKER_COMMAND": json.dumps([sys.executable, "-m", "voxfleet.cli", "worker"])}).start()
    try:
        with kube.api_client() as api:
            fleet = Fleet(api, shard, namespace)
            try:
                yield gateway, lk, fleet
            finally:
                fleet.delete_everything()
    finally:
        operator.stop()
        gateway.stop()
        lk.stop()


def tenant_with_key(kube, fleet: Fleet, platform_namespace: str, prefix: str, **spec) -> tuple[str, str, KeyHeaders]:
    """A Ready Tenant and an API key for it: (name, namespace, headers); the headers print redacted, so a failing
    test's traceback showing this fixture never shows the key."""
    name, namespace = fleet.create_tenant(prefix, **spec)
    fleet.wait_tenant_ready(name)
    return name, namespace, key_headers(create_key(kube, platform_namespace, name))
