"""Fixtures of the operator tests: per module a platform namespace with the worker-token Secret, a tenant shard
(a label only this module's operator selects), the `voxfleet operator` process and a Fleet to drive it."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.operator.fleet import Fleet
from tests.operator.operator_process import WORKER_TOKEN, OperatorProcess
from voxfleet.world.access import Cluster


@pytest.fixture(scope="module")
def platform_namespace(kube: Cluster, installed_crds: None) -> Iterator[str]:
    name = kube.new_namespace("vfop")
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_secret(name, {
            "metadata": {"name": "voxfleet-worker-token"},
            "data": {"token": base64.b64encode(WORKER_TOKEN.encode()).decode()}})
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="module")
def shard() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def operator_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operator-logs")


def operator_process(kube: Cluster, platform_namespace: str, shard: str, logs: Path, **kwargs) -> OperatorProcess:
    return OperatorProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace, shard=shard,
                           log_path=logs / f"operator-{uuid.uuid4().hex[:6]}.log", **kwargs)


@pytest.fixture(scope="module")
def fleet(kube: Cluster, platform_namespace: str, shard: str) -> Iterator[Fleet]:
    with kube.api_client() as api:
        fleet = Fleet(api, shard, platform_namespace)
        yield fleet


@pytest.fixture(scope="module")
def operator(kube: Cluster, platform_namespace: str, shard: str, operator_logs: Path,
             fleet: Fleet) -> Iterator[OperatorProcess]:
    """One operator for the module, running worker pods as real stand-in processes on the runner nodes."""
    process = operator_process(kube, platform_namespace, shard, operator_logs).start()
    yield process
    fleet.delete_everything()  # while the operator still runs: it releases the Tenants' finalizers
    process.stop()
