"""Warm-pool scaling with real worker processes (stand-ins serving the `/v1/load` contract on the pod runner):
scale up within 10 s on load, scale down after the delay taking idle workers first, the worker-loss spare (a
single-worker pool with a call grows to two; BufferOnly stays at one; the tenant's pod quota caps the spare), spec
edits roll the pool, and a rollout never cuts a live call (the old worker gets SIGTERM and finishes)."""

from __future__ import annotations

import re
import time

import pytest

from tests.operator.fleet import Fleet, condition, wait_for
from tests.operator.operator_process import OperatorProcess
from voxfleet.api import labels
from voxfleet.world.access import RunnerPool

pytestmark = pytest.mark.world


def pool_spec(min_workers: int = 1, max_workers: int = 4, delay: int = 4, spare: str = "BufferOnly") -> dict:
    """BufferOnly unless a test is about the spare: these tests count workers by the buffer rule alone."""
    return {"regions": [{"name": "us-east", "minWorkers": min_workers, "maxWorkers": max_workers}],
            "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "scaleDownDelaySeconds": delay,
                        "spareCapacity": spare},
            "limits": {"maxSessionSeconds": 60}}


def default_scaling_spec(**scaling: object) -> dict:
    """The defaults (4 slots per worker, 2 free slots wanted, spareCapacity WorkerLoss) in a 1..3 pool."""
    return {"regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 3}],
            "scaling": {"scaleDownDelaySeconds": 3, **scaling}, "limits": {"maxSessionSeconds": 60}}


@pytest.fixture(scope="module")
def tenant_namespace(operator: OperatorProcess, fleet: Fleet) -> str:
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    return namespace


def replicas(fleet: Fleet, namespace: str, agent: str) -> int:
    deployment = fleet.deployment(namespace, f"{agent}-us-east")
    return deployment.spec.replicas if deployment else -1


def test_load_scales_up_within_10_seconds_and_down_after_the_delay_idle_first(
        operator: OperatorProcess, fleet: Fleet, tenant_namespace: str):
    ns = tenant_namespace
    fleet.create_agent(ns, "scaler", pool_spec())
    fleet.wait_agent_ready(ns, "scaler")
    [first] = fleet.ready_pods(ns, "scaler")
    assert replicas(fleet, ns, "scaler") == 1  # ceil((0 + 1) / 2)

    fleet.set_calls(first, 2)  # full: (2 + 1) / 2 -> 2 workers
    loaded = time.monotonic()
    wait_for("a second worker wanted", lambda: replicas(fleet, ns, "scaler") == 2, timeout=10)
    scaled_in = time.monotonic() - loaded
    wait_for("two ready workers", lambda: len(fleet.ready_pods(ns, "scaler")) == 2, timeout=20)
    assert scaled_in < 10, f"scale-up took {scaled_in:.1f} s"

    second = next(p for p in fleet.ready_pods(ns, "scaler") if p.metadata.name != first.metadata.name)
    fleet.set_calls(second, 1)  # 3 calls + 1 buffer -> 2 workers still; then a third worker for more
    fleet.set_calls(first, 2)
    fleet.set_calls(second, 2)  # 4 + 1 -> 3 workers
    wait_for("a third worker", lambda: len(fleet.ready_pods(ns, "scaler")) == 3, timeout=20)
    third = next(p for p in fleet.ready_pods(ns, "scaler")
                 if p.metadata.name not in (first.metadata.name, second.metadata.name))

    # Demand drops to one call on the *second* worker: 1 + 1 -> 1 worker wanted; first and third are idle.
    fleet.set_calls(first, 0)
    fleet.set_calls(second, 1)
    dropped = time.monotonic()
    wait_for("the pool to shrink to one", lambda: replicas(fleet, ns, "scaler") == 1, timeout=30)
    waited = time.monotonic() - dropped
    assert waited >= 4 - 1.5, f"scaled down after {waited:.1f} s, before the 4 s delay"
    wait_for("the idle workers to go", lambda: [p.metadata.name for p in fleet.pool_pods(
        ns, "scaler", include_terminating=True)] == [second.metadata.name], timeout=30)
    assert third.metadata.name not in [p.metadata.name for p in fleet.pool_pods(ns, "scaler", include_terminating=True)]
    # No flapping: one step up at a time and one step down, nothing else.
    time.sleep(3)
    assert replicas(fleet, ns, "scaler") == 1
    agent = fleet.wait_agent(ns, "scaler", "session figures in status",
                             lambda a: a["status"]["activeSessions"] == 1 and a["status"]["freeSlots"] == 1,
                             timeout=15)
    assert agent["status"]["regions"][0]["desiredWorkers"] == 1
    assert operator.metric("voxfleet_pool_desired_workers", agent="scaler", region="us-east") == 1
    assert operator.metric("voxfleet_operator_scale_events_total", direction="up") >= 2
    assert operator.metric("voxfleet_operator_scale_events_total", direction="down") >= 1
    said = fleet.wait_normal_events(ns, "scaler", "ScaledUp", "ScaledDown")
    assert sorted(m.split(" worker(s)")[0] for m in said["ScaledUp"]) == ["us-east: 1 -> 2", "us-east: 2 -> 3"]
    # Demand falls in two reads (the first worker's calls end before the second's drop), so the delayed scale-down
    # goes 3 -> 1 at once or through 2, as the scale-down window slides; never back up (the ScaledUp list above).
    steps = sorted((int(a), int(b)) for a, b in
                   re.findall(r"us-east: (\d+) -> (\d+) worker", " ".join(said["ScaledDown"])))
    assert steps in ([(3, 1)], [(2, 1), (3, 2)]), said["ScaledDown"]


def ready_message(fleet: Fleet, namespace: str, agent: str) -> str:
    return condition(fleet.agent(namespace, agent), "Ready").get("message", "")


def test_a_single_worker_pool_with_a_call_gets_a_worker_loss_spare_and_buffer_only_stays_at_one(
        operator: OperatorProcess, fleet: Fleet, tenant_namespace: str):
    ns = tenant_namespace
    fleet.create_agent(ns, "spare", default_scaling_spec())  # spareCapacity unset: WorkerLoss
    fleet.create_agent(ns, "plain", default_scaling_spec(spareCapacity="BufferOnly"))
    fleet.wait_agent_ready(ns, "spare")
    fleet.wait_agent_ready(ns, "plain")
    [spare_first] = fleet.ready_pods(ns, "spare")
    [plain_first] = fleet.ready_pods(ns, "plain")
    assert (replicas(fleet, ns, "spare"), replicas(fleet, ns, "plain")) == (1, 1)  # no call: no spare

    fleet.set_calls(spare_first, 1)  # 1 call + 2 free fit on one worker of 4 slots; its loss would cut the call
    fleet.set_calls(plain_first, 1)
    called = time.monotonic()
    wait_for("the spare worker wanted", lambda: replicas(fleet, ns, "spare") == 2, timeout=15)
    grown_in = time.monotonic() - called
    wait_for("the spare worker ready", lambda: len(fleet.ready_pods(ns, "spare")) == 2, timeout=30)
    said = fleet.wait_normal_events(ns, "spare", "ScaledUp")["ScaledUp"]
    print(f"WorkerLoss: 1 -> 2 workers {grown_in:.1f} s after the first call; BufferOnly pool: "
          f"{replicas(fleet, ns, 'plain')} worker(s)")
    assert said == ["us-east: 1 -> 2 worker(s) for 1 active call(s) and 2 free slot(s) wanted, with 1 worker-loss"
                    " spare worker(s) so the busiest worker's calls fit on the others (x1)"]
    fleet.wait_agent(ns, "spare", "the spare named in the Ready condition",
                     lambda a: "worker-loss spare" in condition(a, "Ready").get("message", ""), timeout=15)

    # BufferOnly saw the same call (status) and kept its one worker through several poll rounds.
    fleet.wait_agent(ns, "plain", "its call in status", lambda a: a["status"]["activeSessions"] == 1, timeout=15)
    time.sleep(3)
    assert replicas(fleet, ns, "plain") == 1
    assert "ScaledUp" not in {e.reason for e in fleet.events(ns, "plain")}
    assert "spare" not in ready_message(fleet, ns, "plain")

    # The call ends: the spare goes after the scale-down delay, the pool is one worker again.
    fleet.set_calls(spare_first, 0)
    wait_for("the spare to go with the call", lambda: replicas(fleet, ns, "spare") == 1, timeout=30)
    fleet.wait_agent(ns, "spare", "no spare in the Ready condition",
                     lambda a: "spare" not in condition(a, "Ready").get("message", ""), timeout=15)
    fleet.set_calls(plain_first, 0)


def test_the_worker_loss_spare_stays_within_the_tenants_pod_quota(operator: OperatorProcess, fleet: Fleet):
    tenant, ns = fleet.create_tenant("q", quotas={"maxWorkers": 1})
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(ns, "capped", default_scaling_spec())
    fleet.wait_agent_ready(ns, "capped")
    [only] = fleet.ready_pods(ns, "capped")
    fleet.set_calls(only, 1)
    agent = fleet.wait_agent(ns, "capped", "the spare left out by the quota, said in Ready", lambda a: "left out by"
                             " quota" in condition(a, "Ready").get("message", ""), timeout=15)
    print(f"quota maxWorkers 1, 1 call: Ready says {condition(agent, 'Ready').get('message')!r}")
    time.sleep(2)
    assert replicas(fleet, ns, "capped") == 1  # never asked for a pod the quota refuses
    assert condition(fleet.agent(ns, "capped"), "Degraded").get("status") == "False"
    fleet.set_calls(only, 0)


def test_a_rollout_keeps_a_worker_with_a_live_call_until_the_call_ends(
        operator: OperatorProcess, fleet: Fleet, tenant_namespace: str, pods: RunnerPool):
    ns = tenant_namespace
    fleet.create_agent(ns, "roller", pool_spec(delay=60) | {"greeting": "Hello."})
    fleet.wait_agent_ready(ns, "roller")
    [old] = fleet.ready_pods(ns, "roller")
    old_hash = old.metadata.annotations[labels.CONFIG_HASH]
    fleet.set_calls(old, 1)
    wait_for("the call to be seen", lambda: fleet.agent(ns, "roller")["status"]["activeSessions"] == 1,
             timeout=15)

    fleet.patch_agent(ns, "roller", {"greeting": "Hello again."})  # a spec edit rolls the pool
    new = wait_for("a ready worker on the new config", lambda: next((
        p for p in fleet.ready_pods(ns, "roller") if p.metadata.annotations[labels.CONFIG_HASH] != old_hash),
        None), timeout=30)
    assert new.metadata.annotations[labels.CONFIG_HASH] != old_hash
    wait_for("the old worker to get SIGTERM", lambda: "got SIGTERM with 1 live call" in pods.log(
        ns, old.metadata.name, "worker"), timeout=30)
    time.sleep(2)  # it keeps its call: still there, still draining
    still = [p for p in fleet.pool_pods(ns, "roller", include_terminating=True) if p.metadata.name == old.metadata.name]
    assert still and still[0].metadata.deletion_timestamp is not None
    assert "drained" not in pods.log(ns, old.metadata.name, "worker")
    agent = fleet.agent(ns, "roller")
    assert agent["status"]["activeSessions"] == 1  # the draining worker's call still counts

    fleet.set_calls(old, 0)  # the caller hangs up
    wait_for("the old worker to finish and go", lambda: old.metadata.name not in [
        p.metadata.name for p in fleet.pool_pods(ns, "roller", include_terminating=True)], timeout=30)
    assert "drained: exiting" in pods.log(ns, old.metadata.name, "worker")
    agent = fleet.wait_agent_ready(ns, "roller")
    assert agent["status"]["readyWorkers"] == 1
    new_hash = new.metadata.annotations[labels.CONFIG_HASH]
    assert [p.metadata.annotations[labels.CONFIG_HASH] for p in fleet.pool_pods(ns, "roller")] == [new_hash]
    said = fleet.wait_normal_events(ns, "roller", "RollingOut", "RolledOut")
    assert said["RollingOut"] == [f"generation 2: worker config {new_hash} rolling out in us-east (x1)"]
    assert said["RolledOut"] == [f"us-east: all 1 worker(s) run worker config {new_hash} (x1)"]
