"""Bad specs the schema can't catch become a Degraded condition and a Warning Event with a clear message, and the
operator keeps serving every other agent. Workers here are kwok-simulated pods (no processes needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.operator.conftest import operator_process
from tests.operator.fleet import Fleet, condition, wait_for
from tests.operator.operator_process import OperatorProcess
from voxfleet.api import labels
from voxfleet.world.access import Cluster

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def simulated_operator(kube: Cluster, platform_namespace: str, shard: str, operator_logs: Path,
                       fleet: Fleet) -> Iterator[OperatorProcess]:
    process = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False,
                               extra_env={"VOXFLEET_ALLOWED_WORKER_IMAGES": '["registry.example/voxfleet-*"]'})
    process.start()
    yield process
    fleet.delete_everything()
    process.stop()


@pytest.fixture(scope="module")
def tenant(simulated_operator: OperatorProcess, fleet: Fleet) -> str:
    name, namespace = fleet.create_tenant(allowedRegions=["us-east", "eu-west", "mars-north"],
                                          quotas={"maxWorkers": 6, "maxAgents": 10})
    fleet.wait_tenant_ready(name)
    return namespace


def spec(**changes) -> dict:
    base = {"regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 2}],
            "scaling": {"sessionsPerWorker": 2, "bufferSessions": 0}}
    base.update(changes)
    return base


def degraded(fleet: Fleet, namespace: str, name: str, reason: str) -> dict:
    agent = fleet.wait_agent(namespace, name, f"Degraded {reason}", lambda a: (
        condition(a, "Degraded").get("status") == "True" and condition(a, "Degraded").get("reason") == reason))
    event = wait_for(f"a {reason} Event", lambda: next((
        e for e in fleet.events(namespace, name) if e.reason == reason and e.type == "Warning"), None))
    assert event.involved_object.kind == "VoiceAgent"
    assert event.message == condition(agent, "Degraded")["message"]
    return agent


def test_missing_secret(simulated_operator: OperatorProcess, fleet: Fleet, tenant: str):
    llm = {"llm": {"provider": "openai", "secretRef": {"name": "llm-keys", "key": "openai"}}}
    fleet.create_agent(tenant, "nokey", spec(pipeline=llm))
    agent = degraded(fleet, tenant, "nokey", "SecretMissing")
    message = condition(agent, "Degraded")["message"]
    assert "Secret 'llm-keys' named by spec.pipeline.llm.secretRef does not exist" in message
    assert condition(agent, "Ready")["status"] == "False"
    assert fleet.deployment(tenant, "nokey-us-east") is None  # nothing half-made

    # A Secret that is not the tenant's (no tenant-secret label): refused, naming the field and the way to write it.
    fleet.core.create_namespaced_secret(tenant, {"metadata": {"name": "llm-keys"},
                                                 "stringData": {"anthropic": "sk-not-this-one"}})
    agent = degraded(fleet, tenant, "nokey", "SecretNotAllowed")
    message = condition(agent, "Degraded")["message"]
    assert "spec.pipeline.llm.secretRef" in message and "PUT /v1/secrets/{name}" in message
    # Marked as the tenant's, with the wrong key, then the right one: the operator rechecks on its own.
    fleet.core.patch_namespaced_secret("llm-keys", tenant, {"metadata": {"labels": {labels.TENANT_SECRET: "true"}}})
    agent = degraded(fleet, tenant, "nokey", "SecretKeyMissing")
    assert "sk-not-this-one" not in str(agent) and all("sk-not" not in (e.message or "")
                                                        for e in fleet.events(tenant, "nokey"))
    fleet.core.patch_namespaced_secret("llm-keys", tenant, {"stringData": {"openai": "sk-test"}})
    fleet.wait_agent_ready(tenant, "nokey", timeout=30)
    assert condition(fleet.agent(tenant, "nokey"), "Degraded")["status"] == "False"


def test_the_worker_token_secret_is_never_allowed_even_when_labelled(simulated_operator: OperatorProcess,
                                                                     fleet: Fleet, tenant: str):
    """issue 16: a tool header taking voxfleet-worker-token/token would have sent the worker credential to the
    tenant's own URL. No pod is ever built with that reference."""
    header = {"name": "X-Steal", "secretKeyRef": {"name": "voxfleet-worker-token", "key": "token"}}
    tool = {"name": "steal", "description": "Sends a header.", "parameters": {"type": "object"},
            "http": {"url": "https://tools.example.com/steal", "headers": [header]}}
    fleet.create_agent(tenant, "thief", spec(tools=[tool]))
    agent = degraded(fleet, tenant, "thief", "SecretNotAllowed")
    message = condition(agent, "Degraded")["message"]
    assert "spec.tools[steal].http.headers[X-Steal].secretKeyRef" in message and "voxfleet-worker-token" in message
    # Someone with Secret rights labels the worker token as a tenant secret: still refused.
    fleet.core.patch_namespaced_secret("voxfleet-worker-token", tenant,
                                       {"metadata": {"labels": {labels.TENANT_SECRET: "true"}}})
    fleet.patch_agent(tenant, "thief", {"greeting": "again"})
    agent = fleet.wait_agent(tenant, "thief", "the edit judged", lambda a: a["status"].get("observedGeneration") == 2)
    assert condition(agent, "Degraded")["reason"] == "SecretNotAllowed"
    assert fleet.deployment(tenant, "thief-us-east") is None
    referencing = [p.metadata.name for p in fleet.core.list_namespaced_pod(tenant).items
                   if "voxfleet-worker-token" in str([c.env for c in p.spec.containers])
                   and p.metadata.labels.get(labels.AGENT) == "thief"]
    assert referencing == []
    fleet.core.patch_namespaced_secret("voxfleet-worker-token", tenant,
                                       {"metadata": {"labels": {labels.TENANT_SECRET: None}}})


def test_a_worker_over_the_tenants_cpu_bound_is_refused(simulated_operator: OperatorProcess, fleet: Fleet):
    """A kubectl tenant user asking for a 64-core worker: the namespace's LimitRange refuses the pod, and the
    VoiceAgent says so (QuotaExceeded, naming the bound)."""
    name, namespace = fleet.create_tenant(quotas={"maxWorkerCpu": "2", "cpu": "4"})
    fleet.wait_tenant_ready(name)
    greedy = spec(worker={"resources": {"requests": {"cpu": "64"}, "limits": {"cpu": "64"}}})
    fleet.create_agent(namespace, "greedy", greedy)
    agent = degraded(fleet, namespace, "greedy", "QuotaExceeded")
    message = condition(agent, "Degraded")["message"]
    print(f"the VoiceAgent says: {message}")
    assert "maximum cpu usage per Container is 2" in message
    assert fleet.pool_pods(namespace, "greedy") == []
    limits = fleet.core.read_namespaced_limit_range("voxfleet-limits", namespace).spec.limits[0]
    assert limits.max == {"cpu": "2", "memory": "8Gi"}


def test_image_not_allowed_keeps_the_running_pool(simulated_operator: OperatorProcess, fleet: Fleet, tenant: str):
    fleet.create_agent(tenant, "badimage", spec(worker={"image": "evil.example/miner:latest"}))
    agent = degraded(fleet, tenant, "badimage", "ImageNotAllowed")
    assert "'evil.example/miner:latest' is not in the platform's allow-list" in condition(agent, "Degraded")["message"]
    assert fleet.deployment(tenant, "badimage-us-east") is None

    fleet.create_agent(tenant, "edited", spec(worker={"image": "registry.example/voxfleet-gpu:2"}))
    fleet.wait_agent_ready(tenant, "edited")
    before = fleet.deployment(tenant, "edited-us-east")
    assert before.spec.template.spec.containers[0].image == "registry.example/voxfleet-gpu:2"
    fleet.patch_agent(tenant, "edited", {"worker": {"image": "evil.example/miner:latest"}, "greeting": "x"})
    degraded(fleet, tenant, "edited", "ImageNotAllowed")
    after = fleet.deployment(tenant, "edited-us-east")
    assert after.metadata.generation == before.metadata.generation  # the bad edit was not rolled out
    assert after.spec.template.spec.containers[0].image == "registry.example/voxfleet-gpu:2"


def test_region_without_nodes(simulated_operator: OperatorProcess, fleet: Fleet, tenant: str):
    fleet.create_agent(tenant, "mars", spec(regions=[{"name": "us-east", "minWorkers": 1, "maxWorkers": 2},
                                                     {"name": "mars-north", "minWorkers": 1, "maxWorkers": 2}]))
    agent = degraded(fleet, tenant, "mars", "NoNodesInRegion")
    assert "topology.kubernetes.io/region=mars-north" in condition(agent, "Degraded")["message"]
    # The region that has nodes serves anyway; the other's pool waits for nodes (Pending, not elsewhere).
    wait_for("us-east ready", lambda: fleet.ready_pods(tenant, "mars", "us-east"))
    pending = wait_for("a mars-north pod", lambda: fleet.pool_pods(tenant, "mars", "mars-north"))
    assert pending[0].spec.node_name is None and pending[0].status.phase == "Pending"


def test_quota_exceeded(simulated_operator: OperatorProcess, fleet: Fleet, tenant: str):
    name, namespace = fleet.create_tenant(quotas={"maxWorkers": 1})
    fleet.wait_tenant_ready(name)
    fleet.create_agent(namespace, "big", spec(regions=[{"name": "eu-west", "minWorkers": 2, "maxWorkers": 3}]))
    agent = degraded(fleet, namespace, "big", "QuotaExceeded")
    assert "exceeded quota" in condition(agent, "Degraded")["message"]
    assert len(fleet.pool_pods(namespace, "big")) == 1


def test_other_agents_keep_being_served(simulated_operator: OperatorProcess, fleet: Fleet, tenant: str):
    # Self-contained: under xdist this module's tests may each get their own operator, in any order.
    fleet.create_agent(tenant, "broken", spec(worker={"image": "evil.example/miner:latest"}))
    degraded(fleet, tenant, "broken", "ImageNotAllowed")
    fleet.create_agent(tenant, "healthy", spec(regions=[{"name": "eu-west", "minWorkers": 1, "maxWorkers": 2}]))
    agent = fleet.wait_agent_ready(tenant, "healthy")
    assert condition(agent, "Degraded")["status"] == "False"
    assert simulated_operator.metric("voxfleet_operator_events_total", reason="ImageNotAllowed") >= 1
    assert condition(fleet.agent(tenant, "broken"), "Degraded")["reason"] == "ImageNotAllowed"  # still reported


def test_a_tenant_cannot_take_a_namespace_it_did_not_get(simulated_operator: OperatorProcess, fleet: Fleet,
                                                         kube: Cluster, tenant: str):
    """Another Tenant's namespace, or one that existed before (not made by the operator for this Tenant), is
    refused with a condition naming spec.namespace; the namespace is left as it was."""
    squatter, _ = fleet.create_tenant("squat", namespace=tenant)
    existing = kube.new_namespace("preexisting")
    outsider, _ = fleet.create_tenant("outside", namespace=existing)
    for name, namespace in ((squatter, tenant), (outsider, existing)):
        body = wait_for(f"Tenant {name} refused", lambda name=name: (t := fleet.tenant(name)) and condition(
            t, "Ready").get("reason") == "NamespaceTaken" and t, timeout=30)
        message = condition(body, "Degraded")["message"]
        print(f"Tenant {name}: {message}")
        assert message.startswith("spec.namespace:") and namespace in message
        assert condition(body, "Ready")["status"] == "False"
        # It holds nothing: no agents counted (which would block its deletion), no finalizer.
        assert body["status"]["agents"] == 0 and not body["metadata"].get("finalizers")
    assert fleet.core.read_namespace(tenant).metadata.labels[labels.TENANT] != squatter
    assert labels.TENANT not in (fleet.core.read_namespace(existing).metadata.labels or {})
    kube.delete_namespace(existing)
