"""Eviction safety against the real apiserver and disruption controller, with stand-in workers (fast; the whole
path with a real `kubectl drain`, real workers and a caller is tests/chaos/test_node_drain.py): a worker with a
call is marked not safe to evict and the eviction API refuses it (429, its pool's PDB), an idle worker of the
same pool is evicted at once, and once the call ends the busy one is marked safe and evicted too."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.operator.fleet import Fleet, wait_for
from tests.operator.operator_process import OperatorProcess
from voxfleet.api import labels

pytestmark = pytest.mark.world

SPEC = {"regions": [{"name": "us-east", "minWorkers": 2, "maxWorkers": 2}],
        "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "spareCapacity": "BufferOnly"},
        "limits": {"maxSessionSeconds": 60}}


def _marks(fleet: Fleet, namespace: str, name: str) -> tuple[str | None, str | None]:
    pod = fleet.core.read_namespaced_pod(name, namespace)
    return ((pod.metadata.labels or {}).get(labels.SAFE_TO_EVICT),
            (pod.metadata.annotations or {}).get(labels.AUTOSCALER_SAFE_TO_EVICT))


def _evict(fleet: Fleet, namespace: str, name: str) -> int:
    """The eviction API's answer: 201 evicted, 429 refused by a disruption budget."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
    try:
        fleet.core.create_namespaced_pod_eviction(name, namespace, body)
    except client.ApiException as error:
        return error.status
    return 201


def _gone_or_terminating(fleet: Fleet, namespace: str, name: str) -> bool:
    try:
        return fleet.core.read_namespaced_pod(name, namespace).metadata.deletion_timestamp is not None
    except client.ApiException as error:
        return error.status == 404


def test_a_worker_with_a_call_is_not_evicted_and_an_idle_one_is(operator: OperatorProcess, fleet: Fleet):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "guarded", SPEC)
    wait_for("two ready workers", lambda: len(fleet.ready_pods(namespace, "guarded")) == 2, timeout=60)
    busy, idle = sorted(p.metadata.name for p in fleet.ready_pods(namespace, "guarded"))

    fleet.set_calls(fleet.core.read_namespaced_pod(busy, namespace), 1)
    called = time.monotonic()
    wait_for("the busy worker marked", lambda: _marks(fleet, namespace, busy) == ("false", "false"), timeout=20)
    marked = time.monotonic() - called
    wait_for("the idle worker marked", lambda: _marks(fleet, namespace, idle) == ("true", "true"), timeout=20)
    # The budget covers the busy worker only, and allows no disruption.
    wait_for("the PDB counts the busy worker", lambda: (
        (pdb := client.PolicyV1Api(fleet.api).read_namespaced_pod_disruption_budget("guarded-us-east", namespace))
        .status.observed_generation == pdb.metadata.generation and pdb.status.current_healthy == 1), timeout=20)

    refused = [_evict(fleet, namespace, busy) for _ in range(3)]
    assert refused == [429, 429, 429]
    assert not _gone_or_terminating(fleet, namespace, busy)
    assert _evict(fleet, namespace, idle) == 201
    assert _gone_or_terminating(fleet, namespace, idle)

    fleet.set_calls(fleet.core.read_namespaced_pod(busy, namespace), 0)  # the call ends
    ended = time.monotonic()
    wait_for("the worker marked safe after its call", lambda: _marks(fleet, namespace, busy) == ("true", "true"),
             timeout=20)
    unmarked = time.monotonic() - ended
    assert _evict(fleet, namespace, busy) == 201
    print(f"eviction safety: busy worker marked {marked:.1f} s after its call started, refused 3/3 evictions;"
          f" idle worker evicted at once; marked safe {unmarked:.1f} s after the call ended, then evicted")
