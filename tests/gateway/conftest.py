"""Fixtures of the gateway tests: a platform namespace per module (so each module's gateway sees only its own
API keys), a `voxfleet gateway` process, and tenants with keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fresh_database import fresh_database
from tests.gateway.gateway_process import GatewayProcess
from voxfleet.world.access import Cluster


@pytest.fixture(scope="module")
def platform_namespace(kube: Cluster, installed_crds: None) -> Iterator[str]:
    name = kube.new_namespace("vfsys")
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="module")
def module_database(postgres) -> Iterator[str]:
    """A fresh database with every migration applied, for a module's gateway (`database` is one per test): the
    tenant API's history, webhooks and usage answer from it instead of 503 database_not_configured."""
    with fresh_database(postgres.admin_url, "m") as url:
        yield url


@pytest.fixture(scope="module")
def gateway_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-logs")


def start_gateway(kube: Cluster, platform_namespace: str, log_dir: Path, **kwargs) -> GatewayProcess:
    return GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                          log_path=log_dir / f"gateway-{uuid.uuid4().hex[:6]}.log", **kwargs).start()


LATENCY_MS = {"us-east": {"eu-west": 80, "ap-south": 210},
              "eu-west": {"us-east": 80, "ap-south": 120},
              "ap-south": {"eu-west": 120, "us-east": 210}}


def livekit_regions(livekit: dict) -> dict[str, dict[str, str]]:
    """Gateway region settings for the world's two LiveKits; ap-south shares eu-west's (one LiveKit, two regions)."""
    regions = {name: {"url": lk.url, "apiUrl": lk.http_url, "apiKey": lk.api_key, "apiSecret": lk.api_secret}
               for name, lk in livekit.items()}
    regions["ap-south"] = dict(regions["eu-west"])
    return regions


def session_gateway_env(**extra: str) -> dict[str, str]:
    import json

    return {"VOXFLEET_LATENCY_MS": json.dumps(LATENCY_MS), "VOXFLEET_LOAD_POLL_SECONDS": "1", **extra}
