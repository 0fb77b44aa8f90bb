"""Tenants into isolated namespaces and VoiceAgents into region-pinned pools, against the real apiserver, with
stand-in worker processes on the pod runner's nodes."""

from __future__ import annotations

import base64
import re

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.fleet import Fleet, condition, wait_for
from tests.operator.operator_process import WORKER_TOKEN, OperatorProcess
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.api import labels
from voxfleet.world.access import Cluster, RunnerPool

pytestmark = pytest.mark.world


def small_agent(*regions: str, **changes) -> dict:
    spec = {"greeting": "Hello.", "regions": [{"name": r, "minWorkers": 1, "maxWorkers": 3} for r in regions],
            "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "scaleDownDelaySeconds": 5},
            "limits": {"maxSessionSeconds": 60}}
    spec.update(changes)
    return spec


def test_tenant_becomes_an_isolated_namespace(operator: OperatorProcess, fleet: Fleet, kube: Cluster):
    tenant, namespace = fleet.create_tenant(groups=["acme-devs"], quotas={"maxWorkers": 7, "maxAgents": 4})
    status = fleet.wait_tenant_ready(tenant)["status"]
    assert status["namespace"] == namespace and status["agents"] == 0
    ns = fleet.core.read_namespace(namespace)
    assert ns.metadata.labels[labels.TENANT] == tenant
    assert ns.metadata.owner_references[0].name == tenant
    quota = fleet.core.read_namespaced_resource_quota("voxfleet-quota", namespace)
    assert quota.spec.hard == {"pods": "7", "count/voiceagents.voxfleet.dev": "4", "requests.cpu": "20",
                               "limits.cpu": "20", "requests.memory": "40Gi", "limits.memory": "40Gi"}
    networking = client.NetworkingV1Api(fleet.api)
    assert {p.metadata.name for p in networking.list_namespaced_network_policy(namespace).items} == \
        {"voxfleet-ingress", "voxfleet-egress"}
    binding = client.RbacAuthorizationV1Api(fleet.api).read_namespaced_role_binding("voxfleet-tenant", namespace)
    assert [s.name for s in binding.subjects] == ["acme-devs"]
    # The namespace's own worker token, derived from the root; the root itself is in no tenant namespace.
    secret = fleet.core.read_namespaced_secret("voxfleet-worker-token", namespace)
    assert base64.b64decode(secret.data["token"]).decode() == token_for_namespace(WORKER_TOKEN, namespace)
    assert labels.TENANT_SECRET not in (secret.metadata.labels or {})
    everything = fleet.core.list_namespaced_secret(namespace).items
    assert not [s.metadata.name for s in everything
                if any(base64.b64decode(v).decode(errors="replace") == WORKER_TOKEN for v in (s.data or {}).values())]
    printed = kube.kubectl("get", "tenant", tenant).stdout
    assert namespace in printed and "True" in printed


def test_agent_pools_run_only_in_their_regions_and_go_with_the_agent(operator: OperatorProcess, fleet: Fleet,
                                                                      kube: Cluster, pods: RunnerPool):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "support", small_agent("us-east", "eu-west"))
    fleet.wait_agent_ready(namespace, "support")
    # Two workers x two slots, as the stand-ins report on /v1/load (status follows a poll round later).
    agent = fleet.wait_agent(namespace, "support", "free slots from the workers' load",
                             lambda a: a["status"]["freeSlots"] == 4, timeout=15)
    status = agent["status"]
    assert status["regionNames"] == "us-east,eu-west"
    assert status["readyWorkers"] == 2
    assert {r["name"]: r["readyWorkers"] for r in status["regions"]} == {"us-east": 1, "eu-west": 1}
    for region in ("us-east", "eu-west"):
        deployment = fleet.deployment(namespace, f"support-{region}")
        assert deployment is not None and deployment.spec.replicas == 1
        for pod in fleet.pool_pods(namespace, "support", region):
            assert pod.spec.node_name in pods.nodes[region], f"{pod.metadata.name} ran outside {region}"
    printed = kube.kubectl("get", "voiceagents", "-n", namespace, "-o", "wide").stdout
    assert "us-east,eu-west" in printed and "True" in printed
    header, row = printed.strip().splitlines()[:2]
    assert header.split()[:6] == ["NAME", "REGIONS", "READY", "WORKERS", "SESSIONS", "FREE"]
    assert row.split()[3:6] == ["2", "0", "4"]

    fleet.delete_agent(namespace, "support")
    wait_for("every object of the agent to go", lambda: not fleet.apps.list_namespaced_deployment(
        namespace, label_selector=f"{labels.AGENT}=support").items and not fleet.core.list_namespaced_config_map(
        namespace, label_selector=f"{labels.AGENT}=support").items and not fleet.core.list_namespaced_service(
        namespace, label_selector=f"{labels.AGENT}=support").items and not client.PolicyV1Api(
        fleet.api).list_namespaced_pod_disruption_budget(namespace, label_selector=f"{labels.AGENT}=support").items,
        timeout=60)  # the garbage collector's pace, on a busy machine
    wait_for("its worker processes to drain and go", lambda: not fleet.pool_pods(
        namespace, "support", include_terminating=True), timeout=60)


def test_hand_deleted_or_edited_deployment_is_restored(operator: OperatorProcess, fleet: Fleet):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "desk", small_agent("us-east"))
    fleet.wait_agent_ready(namespace, "desk")
    original = fleet.deployment(namespace, "desk-us-east")

    fleet.apps.patch_namespaced_deployment("desk-us-east", namespace, {"spec": {"template": {"spec": {
        "terminationGracePeriodSeconds": 1}}}})
    wait_for("the hand edit to be undone", lambda: (d := fleet.deployment(namespace, "desk-us-east"))
             and d.spec.template.spec.termination_grace_period_seconds == 60 + 30, timeout=20)

    fleet.apps.delete_namespaced_deployment("desk-us-east", namespace)
    restored = wait_for("the deleted Deployment to come back", lambda: (d := fleet.deployment(
        namespace, "desk-us-east")) and d.metadata.uid != original.metadata.uid and d, timeout=20)
    assert restored.spec.replicas == 1
    fleet.wait_agent_ready(namespace, "desk")


def test_removing_a_region_drains_its_pool_then_removes_it(operator: OperatorProcess, fleet: Fleet):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "line", small_agent("us-east", "ap-south"))
    fleet.wait_agent_ready(namespace, "line")
    [busy] = fleet.ready_pods(namespace, "line", "ap-south")
    fleet.set_calls(busy, 1)  # a live call in the region about to go

    fleet.patch_agent(namespace, "line", {"regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 3}]})
    wait_for("the region's pool scaled to zero", lambda: (d := fleet.deployment(namespace, "line-ap-south"))
             and d.spec.replicas == 0, timeout=20)
    agent = fleet.wait_agent(namespace, "line", "draining shown", lambda a: condition(
        a, "Progressing").get("reason") == "DrainingRegion")
    assert [r["name"] for r in agent["status"]["regions"]] == ["us-east", "ap-south"]
    # The worker got SIGTERM and keeps its call: the pod stays until the call ends.
    # By name: the call may have got the region a worker-loss spare (spareCapacity's default) before the edit.
    wait_for("the busy worker to be terminating", lambda: next(
        p for p in fleet.pool_pods(namespace, "line", "ap-south", include_terminating=True)
        if p.metadata.name == busy.metadata.name).metadata.deletion_timestamp, timeout=20)
    assert fleet.deployment(namespace, "line-ap-south") is not None
    fleet.set_calls(busy, 0)
    wait_for("the drained pool to be removed", lambda: fleet.deployment(namespace, "line-ap-south") is None,
             timeout=30)
    fleet.wait_agent_ready(namespace, "line")
    fleet.wait_agent(namespace, "line", "only us-east left in status", lambda a: [
        r["name"] for r in a["status"]["regions"]] == ["us-east"], timeout=10)
    said = fleet.wait_normal_events(namespace, "line", "DrainingRegion", "RegionDrained")
    # 1 or 2 workers: the worker-loss spare the call asked for may have been started before the edit.
    assert re.match(r"ap-south left the spec: its [12] worker\(s\) stop taking calls", said["DrainingRegion"][0])
    assert said["RegionDrained"] == ["ap-south: every call ended, its pool is removed (x1)"]


def test_deleting_a_tenant_with_agents_is_refused(operator: OperatorProcess, fleet: Fleet):
    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "keep", small_agent("eu-west", regions=[
        {"name": "eu-west", "minWorkers": 0, "maxWorkers": 1}], scaling={"bufferSessions": 0}))
    wait_for("the Tenant to count its agent", lambda: fleet.tenant(tenant)["status"]["agents"] == 1)
    with pytest.raises(ApiException) as refused:
        fleet.custom.delete_cluster_custom_object("voxfleet.dev", "v1alpha1", "tenants", tenant)
    assert refused.value.status in (403, 422)
    assert f"still has 1 VoiceAgent(s) in namespace {namespace}" in refused.value.body
    assert fleet.tenant(tenant) is not None and fleet.agent(namespace, "keep") is not None

    fleet.delete_agent(namespace, "keep")
    wait_for("the Tenant to count no agent", lambda: fleet.tenant(tenant)["status"]["agents"] == 0)
    fleet.custom.delete_cluster_custom_object("voxfleet.dev", "v1alpha1", "tenants", tenant)
    wait_for("the Tenant to go", lambda: fleet.tenant(tenant) is None, timeout=30)
    wait_for("its namespace to go", lambda: _gone(lambda: fleet.core.read_namespace(namespace)) or
             fleet.core.read_namespace(namespace).status.phase == "Terminating", timeout=30)


def _gone(read) -> bool:
    try:
        read()
        return False
    except ApiException as error:
        return error.status == 404


def test_health_metrics_and_json_logs(operator: OperatorProcess, fleet: Fleet):
    import json

    import httpx

    tenant, namespace = fleet.create_tenant()
    fleet.wait_tenant_ready(tenant)
    fleet.create_agent(namespace, "watched", small_agent("eu-west"))
    fleet.wait_agent(namespace, "watched", "load read", lambda a: a["status"].get("freeSlots") == 2)
    assert httpx.get(f"{operator.url}/healthz", timeout=5).json() == {"ok": True}
    assert operator.metric("voxfleet_operator_reconciles_total", kind="agent", result="ok") > 0
    assert operator.metric("voxfleet_operator_reconcile_duration_seconds_count", kind="tenant") > 0
    assert operator.metric("voxfleet_operator_pools") >= 1
    pool = {"tenant": tenant, "agent": "watched", "region": "eu-west"}
    assert operator.metric("voxfleet_pool_desired_workers", **pool) == 1
    wait_for("ready workers exported", lambda: operator.metric("voxfleet_pool_ready_workers", **pool) == 1)
    assert operator.metric("voxfleet_pool_free_slots", **pool) == 2
    assert operator.metric("voxfleet_operator_load_polls_total", result="ok") > 0
    assert "voxfleet_operator_load_poll_failures_total" in operator.metrics()
    records = [json.loads(line) for line in operator.log().splitlines() if line.startswith("{")]
    assert records and all("event" in r and "level" in r and "timestamp" in r for r in records)
    assert WORKER_TOKEN not in operator.log()
