"""Fixtures of the gateway tests: a platform namespace per module (so each module's gateway sees only its own
API keys), a `voxfleet gateway` process, and tenants with keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.gateway_process import GatewayProcess
from voxfleet.world.access import Cluster


@pytest.fixture(scope="module")
def platform_namespace(kube: Cluster, installed_crds: None) -> Iterator[str]:
    name = kube.new_namespace("vfsys")
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="module")
def gateway_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-logs")


def start_gateway(kube: Cluster, platform_namespace: str, log_dir: Path, **kwargs) -> GatewayProcess:
    return GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                          log_path=log_dir / f"gateway-{uuid.uuid4().hex[:6]}.log", **kwargs).start()
