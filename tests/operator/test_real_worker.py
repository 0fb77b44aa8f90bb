"""The operator with the real `voxfleet worker` (the default worker command) on the pod runner: the pool warms up,
calls dispatched to it through the worker's own control API (joining a real LiveKit room) scale the region up,
and a rollout lets the worker with live calls drain them before it exits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from livekit import api as livekit_api

from tests.operator.conftest import operator_process
from tests.operator.fleet import Fleet, wait_for
from tests.operator.operator_process import WORKER_TOKEN, OperatorProcess, worker_headers
from voxfleet.api import labels
from voxfleet.world.access import Cluster, RunnerPool

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def real_operator(kube: Cluster, platform_namespace: str, shard: str, operator_logs: Path,
                  fleet: Fleet) -> Iterator[OperatorProcess]:
    process = operator_process(kube, platform_namespace, shard, operator_logs,
                               extra_env={"VOXFLEET_WORKER_COMMAND": '["voxfleet", "worker"]'})
    process.start()
    yield process
    fleet.delete_everything()
    process.stop()


def dispatch(pod, livekit_region, tenant: str) -> str:
    session_id = f"sess-{uuid.uuid4().hex}"
    room = f"room-{uuid.uuid4().hex[:8]}"
    identity = f"agent-{session_id[-12:]}"
    token = (livekit_api.AccessToken(livekit_region.api_key, livekit_region.api_secret)
             .with_identity(identity).with_grants(livekit_api.VideoGrants(room_join=True, room=room))
             .with_ttl(timedelta(minutes=10)).to_jwt())
    body = {"sessionId": session_id, "tenant": tenant, "agent": "frontdesk", "region": "us-east", "room": room,
            "livekitUrl": livekit_region.url, "livekitToken": token, "agentIdentity": identity}
    response = httpx.post(f"http://{pod.status.pod_ip}:8080/v1/dispatch", json=body,
                          headers=worker_headers(pod.metadata.namespace), timeout=15)
    assert response.status_code == 201, response.text
    return session_id


def test_real_workers_scale_with_their_calls_and_drain_on_rollout(real_operator: OperatorProcess, fleet: Fleet,
                                                                   livekit, pods: RunnerPool):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "frontdesk", {
        "greeting": "Front desk, how can I help?",
        "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 3}],
        "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "scaleDownDelaySeconds": 60},
        "turnDetection": {"detector": "speech-timeout"},
        # Callers that never speak: limits far beyond the test's waits, so the calls are still live at the rollout
        # however slow the machine (with the default 60 s idle timeout they ended first on a loaded CI run).
        "limits": {"maxSessionSeconds": 900, "idleTimeoutSeconds": 900}})
    fleet.wait_agent_ready(namespace, "frontdesk", timeout=120)  # a real worker loads its models first
    agent = fleet.wait_agent(namespace, "frontdesk", "free slots read from the real worker's /v1/load",
                             lambda a: a["status"]["freeSlots"] == 2, timeout=20)
    assert agent["status"]["readyWorkers"] == 1
    [first] = fleet.ready_pods(namespace, "frontdesk")
    HEADERS = worker_headers(namespace)
    # Its credential is its namespace's own: the platform's root and another tenant's token are refused.
    load_url = f"http://{first.status.pod_ip}:8080/v1/load"
    refusals = {name: httpx.get(load_url, headers=headers, timeout=5).status_code for name, headers in (
        ("root", {"Authorization": f"Bearer {WORKER_TOKEN}"}), ("another tenant's", worker_headers("tenant-other")))}
    print(f"the real worker's answers to foreign tokens: {refusals}")
    assert refusals == {"root": 401, "another tenant's": 401}
    assert httpx.get(load_url, headers=HEADERS, timeout=5).status_code == 200

    sessions = [dispatch(first, livekit["us-east"], tenant) for _ in range(2)]  # the worker is now full
    dispatched = time.monotonic()
    wait_for("a second worker wanted", lambda: fleet.deployment(namespace, "frontdesk-us-east").spec.replicas == 2,
             timeout=10)
    assert time.monotonic() - dispatched < 10
    fleet.wait_agent(namespace, "frontdesk", "two live calls in status",
                     lambda a: a["status"]["activeSessions"] == 2, timeout=15)
    wait_for("the second worker ready", lambda: len(fleet.ready_pods(namespace, "frontdesk")) == 2, timeout=120)

    old_hash = first.metadata.annotations[labels.CONFIG_HASH]
    fleet.patch_agent(namespace, "frontdesk", {"greeting": "Front desk, good day."})
    wait_for("the busy worker to be asked to stop", lambda: next(
        p for p in fleet.pool_pods(namespace, "frontdesk", include_terminating=True)
        if p.metadata.name == first.metadata.name).metadata.deletion_timestamp, timeout=180)
    print(f"real worker rollout: the busy worker was asked to stop {time.monotonic() - dispatched:.1f} s after"
          " its calls began")
    time.sleep(3)
    # Still there, still serving its calls: SIGTERM only stopped new ones.
    load = httpx.get(f"http://{first.status.pod_ip}:8080/v1/load", headers=HEADERS, timeout=5).json()
    assert load["draining"] is True and load["active"] == 2
    for session_id in sessions:  # the callers hang up
        httpx.delete(f"http://{first.status.pod_ip}:8080/v1/sessions/{session_id}", headers=HEADERS, timeout=15)
    wait_for("the drained worker to exit and its pod to go", lambda: first.metadata.name not in [
        p.metadata.name for p in fleet.pool_pods(namespace, "frontdesk", include_terminating=True)], timeout=60)
    agent = fleet.wait_agent_ready(namespace, "frontdesk", timeout=120)
    assert all(p.metadata.annotations[labels.CONFIG_HASH] != old_hash
               for p in fleet.pool_pods(namespace, "frontdesk"))
