"""`kubectl drain` of a node with a live call cuts nothing (real everything: kube-apiserver with the real
disruption controller and scheduler, kwok nodes, real `voxfleet worker` processes, the operator, the gateway,
a livekit-server, a caller in the room).

The test brings two nodes of its own in us-east (a private pod runner plays their kubelet, and only this test's
workers tolerate them): draining a shared node would evict other tests' workers. All workers start on node X;
node Y is opened just before X is drained. Then:

- the idle worker on X is evicted at once (no budget holds an idle worker);
- the busy one is not evicted while its call lives (its pool's PDB refuses: it is marked safe-to-evict=false),
  is told to drain (it turns NotReady: the gateway places no new call on it; the next call lands on Y), and the
  caller still speaks and hears the agent answer after the drain started;
- after the caller hangs up, the drain completes.

Printed: how long the drain waited (from its start and from the hang-up), the idle eviction's delay, calls cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from kubernetes import client

from tests.callers.caller_bot import CallerBot, Recogniser
from tests.chaos.gap_meter import GapMeter
from tests.gateway import real_worker_platform
from tests.gateway.conftest import livekit_regions, session_gateway_env
from tests.gateway.gateway_process import WORKER_TOKEN, GatewayProcess
from tests.gateway.tenant_setup import create_key, key_headers
from tests.operator.fleet import Fleet
from tests.operator.operator_process import OperatorProcess
from tests.world.waiting import wait_for
from voxfleet.api import labels
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.world import binaries, topology
from voxfleet.world.processes import MARKER_ENV

pytestmark = [pytest.mark.world, pytest.mark.realtime, pytest.mark.timeout(600)]

AGENT = "frontdesk"
GREETING = "Hello, thank you for calling. How can I help you today?"
HOURS = "We are open every day from nine in the morning to six in the evening."
SPEC = {
    "greeting": GREETING,
    "pipeline": {"stt": {"provider": "pocketsphinx"}, "llm": {"provider": "scripted"},
                 "tts": {"provider": "espeak", "voice": "en-us"}},
    "turnDetection": {"detector": "speech-timeout", "vad": {"stopMs": 200}, "timeouts": {"speechTimeoutMs": 300}},
    "intents": [{"name": "hours", "keywords": ["opening hours", "open"], "reply": HOURS}],
    # Two workers, one call: one busy and one idle worker on node X. No spare beyond the buffer, so the test's
    # pods are exactly the two it reasons about until the drain. Two slots each: the busy worker still has a
    # free one, so "no new call lands on it" is its draining at work, not its being full.
    "regions": [{"name": "us-east", "minWorkers": 2, "maxWorkers": 3}],
    "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "spareCapacity": "BufferOnly"},
    "limits": {"maxSessionSeconds": 300, "idleTimeoutSeconds": 120},
}


def _node(name: str, pool: str, cidr: str, *, cordoned: bool) -> dict:
    """A runner node of this test alone: the shared kwok keeps it Ready (node-kind=runner), but its pool label
    and taint are this test's, so no other test's pod lands there and the shared pod runner never runs one."""
    manifest = topology.NodeSpec(name, topology.RUNNER, "us-east", "us-east-a", cidr).manifest()
    manifest["metadata"]["labels"][topology.POOL_LABEL] = pool
    manifest["spec"]["taints"] = [{"key": topology.POOL_LABEL, "value": pool, "effect": "NoSchedule"}]
    manifest["spec"]["unschedulable"] = cordoned
    return manifest


@pytest.fixture(scope="module")
def nodes(kube, world, tmp_path_factory):
    """(node X, node Y cordoned, pool label value), with a pod runner of their own."""
    state = tmp_path_factory.mktemp("drain-nodes")
    pool = f"drain-{uuid.uuid4().hex[:6]}"
    # Pod CIDRs far from the world's (127.11-32.x): 127.2xx.y.0/23, two consecutive /23s.
    second, third = random.randrange(200, 250), 2 * random.randrange(0, 126)
    x, y = f"{pool}-x", f"{pool}-y"
    with kube.rest() as rest:
        rest.create(_node(x, pool, f"127.{second}.{third}.0/23", cordoned=False))
        rest.create(_node(y, pool, f"127.{second}.{third + 2}.0/23", cordoned=True))
        wait_for("the test's nodes Ready", lambda: all(
            any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (rest.get("Node", n).get("status") or {}).get("conditions") or []) for n in (x, y)),
            timeout=60)
    runner_log = (state / "pod-runner.log").open("ab")
    runner = subprocess.Popen(
        [sys.executable, "-m", "voxfleet.world.pod_runner", "--kubeconfig", str(kube.kubeconfig),
         "--state-dir", str(state), "--node-selector", f"{topology.POOL_LABEL}={pool}"],
        env={**os.environ, MARKER_ENV: world.world_id}, stdout=runner_log, stderr=subprocess.STDOUT,
        start_new_session=True)
    runner_log.close()
    try:
        wait_for("the test's pod runner", lambda: (state / "pod-runner.ready").exists() or runner.poll() is not None,
                 timeout=30)
        assert runner.poll() is None, (state / "pod-runner.log").read_text()[-3000:]
        yield x, y, pool, state
    finally:
        with kube.rest() as rest:
            for name in (x, y):
                rest.delete("Node", name)
        runner.terminate()
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            runner.kill()


@pytest.fixture(scope="module")
def platform_namespace(kube, installed_crds):
    with real_worker_platform.platform_namespace(kube, "vfdrain") as name:
        yield name


@pytest.fixture(scope="module")
def stack(kube, platform_namespace, livekit, nodes, tmp_path_factory):
    """Gateway and an operator whose workers run only on the test's nodes."""
    _, _, pool, _ = nodes
    logs = tmp_path_factory.mktemp("drain-logs")
    gateway = GatewayProcess(kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace,
                             log_path=logs / "gateway.log",
                             extra_env=session_gateway_env(VOXFLEET_REGIONS=json.dumps(livekit_regions(livekit))))
    gateway.start()
    shard = f"s{uuid.uuid4().hex[:8]}"
    operator = OperatorProcess(
        kubeconfig=kube.kubeconfig, platform_namespace=platform_namespace, shard=shard,
        log_path=logs / "operator.log",
        extra_env={"VOXFLEET_WORKER_COMMAND": json.dumps([sys.executable, "-m", "voxfleet.cli", "worker"]),
                   "VOXFLEET_WORKER_NODE_SELECTOR": json.dumps({topology.POOL_LABEL: pool}),
                   "VOXFLEET_WORKER_TOLERATIONS": json.dumps([{"key": topology.POOL_LABEL, "operator": "Equal",
                                                               "value": pool, "effect": "NoSchedule"}])}).start()
    with kube.api_client() as api:
        fleet = Fleet(api, shard, platform_namespace)
        try:
            yield gateway, fleet, operator, logs
        finally:
            fleet.delete_everything()
            operator.stop()
            gateway.stop()


def _pod(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def _ready(pod: client.V1Pod | None) -> bool:
    return bool(pod and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))


async def _load(pod: client.V1Pod, namespace: str) -> dict:
    token = token_for_namespace(WORKER_TOKEN, namespace)
    async with httpx.AsyncClient(timeout=5) as http:
        answer = await http.get(f"http://{pod.status.pod_ip}:8080/v1/load", headers={"Authorization": f"Bearer {token}"})
    answer.raise_for_status()
    return answer.json()


async def _new_session(gateway: GatewayProcess, headers: dict, timeout: float) -> dict:
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + timeout
        while (response := await http.post(f"/v1/agents/{AGENT}/sessions", json={"callerRegion": "us-east"})
               ).status_code == 503:
            assert time.monotonic() < deadline, response.text
            await asyncio.sleep(0.5)
    assert response.status_code == 201, response.text
    return response.json()


async def test_draining_a_node_with_a_live_call_waits_for_the_call_and_cuts_nothing(kube, nodes, stack):
    x, y, _, _ = nodes
    gateway, fleet, operator, logs = stack
    tenant, namespace = fleet.create_tenant("drain", allowedRegions=["us-east"])
    fleet.wait_tenant_ready(tenant)
    headers = key_headers(create_key(kube, fleet.platform_namespace, tenant))
    recogniser = Recogniser([GREETING, HOURS])
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        policy = client.PolicyV1Api(api)
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
            assert (await http.put(f"/v1/agents/{AGENT}", json=SPEC)).status_code == 201
        wait_for("two ready workers on node X", lambda: len(fleet.ready_pods(namespace, AGENT)) >= 2, timeout=240)
        assert {p.spec.node_name for p in fleet.pool_pods(namespace, AGENT)} == {x}

        session = await _new_session(gateway, headers, timeout=30)
        async with CallerBot(session["livekitUrl"], session["token"]) as caller, GapMeter(caller) as meter:
            greeting = await caller.wait_for_agent_speech(timeout=30)
            assert recogniser.contains(greeting.pcm, GREETING), recogniser.recognise(greeting.pcm)
            busy = meter.serving_pod()
            idle = next(p.metadata.name for p in fleet.pool_pods(namespace, AGENT) if p.metadata.name != busy)
            # The operator marks the busy worker within a few load sweeps, the idle one too.
            marked_at = time.monotonic()
            wait_for("the busy worker marked not safe to evict", lambda: (
                (_pod(core, namespace, busy).metadata.labels or {}).get(labels.SAFE_TO_EVICT) == "false"), timeout=30)
            mark_seconds = time.monotonic() - marked_at
            wait_for("the idle worker marked safe to evict", lambda: (
                (_pod(core, namespace, idle).metadata.labels or {}).get(labels.SAFE_TO_EVICT) == "true"), timeout=30)
            annotations = _pod(core, namespace, busy).metadata.annotations or {}
            assert annotations.get(labels.AUTOSCALER_SAFE_TO_EVICT) == "false"

            kube.kubectl("uncordon", y)  # somewhere for the evicted idle worker's replacement to go
            env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig))
            drain_log = (logs / "kubectl-drain.log").open("w")
            drain_started = time.monotonic()
            drain = subprocess.Popen([str(binaries.find("kubectl").path), "drain", x, "--ignore-daemonsets",
                                      "--delete-emptydir-data", "--timeout=300s"], env=env, stdout=drain_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            evicted: list[str] = []  # the busy pod's deletionTimestamp, sampled until the caller hangs up
            stop_watch = asyncio.Event()

            async def watch_busy_pod() -> None:
                while not stop_watch.is_set():
                    pod = await asyncio.to_thread(_pod, core, namespace, busy)
                    if pod is None or pod.metadata.deletion_timestamp:
                        evicted.append(f"{time.monotonic() - drain_started:.1f} s after the drain started")
                        return
                    await asyncio.sleep(0.25)

            watcher = asyncio.create_task(watch_busy_pod())
            try:
                # The idle worker goes at once.
                await asyncio.to_thread(wait_for, "the idle worker evicted", lambda: (
                    (pod := _pod(core, namespace, idle)) is None or pod.metadata.deletion_timestamp), timeout=60)
                idle_evicted = time.monotonic() - drain_started
                # The busy one is told to drain: NotReady (no new call), its call going on.
                await asyncio.to_thread(wait_for, "the busy worker draining", lambda: not _ready(
                    _pod(core, namespace, busy)), timeout=30)
                assert (await _load(_pod(core, namespace, busy), namespace))["draining"] is True

                # The caller speaks after the drain started and hears the agent that was serving answer.
                spoken = await caller.say("what are your opening hours")
                answer = await caller.wait_for_agent_speech(after=spoken.voice_ended, timeout=30)
                if not recogniser.contains(answer.pcm, HOURS, min_share=0.6):
                    (logs / "answer.pcm").write_bytes(answer.pcm)
                    raise AssertionError(f"answer during the drain: heard {recogniser.recognise(answer.pcm)!r}")
                assert meter.serving_pod() == busy

                # A new call lands elsewhere (on Y, once the replacement worker there is warm), never on X.
                second = await _new_session(gateway, headers, timeout=180)
                busy_load = await _load(_pod(core, namespace, busy), namespace)
                assert (busy_load["active"], busy_load["capacity"]) == (1, 2), busy_load
                serving_second = [p.metadata.name for p in fleet.ready_pods(namespace, AGENT)
                                  if (await _load(p, namespace))["active"] == 1]
                assert serving_second and all(_pod(core, namespace, n).spec.node_name == y for n in serving_second)
                async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30) as http:
                    await http.delete(f"/v1/sessions/{second['sessionId']}")

                pdb = policy.read_namespaced_pod_disruption_budget(f"{AGENT}-us-east", namespace)
                assert drain.poll() is None, (logs / "kubectl-drain.log").read_text()
                assert not evicted, f"the busy worker was evicted with its call live ({evicted[0]})"
            finally:
                stop_watch.set()
                await watcher
        hung_up = time.monotonic()  # the caller left the room

        try:
            await asyncio.to_thread(drain.wait, timeout=120)
        finally:
            if drain.poll() is None:
                drain.kill()
            drain_log.close()
        drain_output = (logs / "kubectl-drain.log").read_text()
        assert drain.returncode == 0, drain_output[-3000:]
        done = time.monotonic()
        assert _pod(core, namespace, busy) is None or _pod(core, namespace, busy).metadata.deletion_timestamp
        refusals = drain_output.count("violate the pod's disruption budget")
    print(f"node drain with a live call: the busy worker marked {mark_seconds:.1f} s after the greeting; the idle"
          f" worker evicted {idle_evicted:.1f} s after the drain started; the busy one refused {refusals} time(s)"
          f" (PDB: disruptionsAllowed {pdb.status.disruptions_allowed}, currentHealthy {pdb.status.current_healthy},"
          f" desiredHealthy {pdb.status.desired_healthy}) while the caller kept talking; the drain waited"
          f" {done - drain_started:.1f} s in all, {done - hung_up:.1f} s after the caller hung up; calls cut: 0")
    assert done - hung_up < 90
