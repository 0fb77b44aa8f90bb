"""Safety: an operator SIGKILLed at exact points of a reconcile (and at random moments) converges after a restart
to exactly the right objects; two replicas never both act; a tenant's group can touch VoiceAgents in its own
namespace and nothing else (checked by impersonation against the real apiserver)."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.conftest import operator_process
from tests.operator.fleet import GROUP, VERSION, Fleet, wait_for
from tests.operator.operator_process import SHARD_LABEL
from voxfleet.api import labels
from voxfleet.world.access import Cluster

pytestmark = pytest.mark.world


def agent_spec() -> dict:
    return {"regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 3},
                        {"name": "eu-west", "minWorkers": 1, "maxWorkers": 3}],
            "scaling": {"sessionsPerWorker": 2, "bufferSessions": 1, "scaleDownDelaySeconds": 30}}


class Scenario:
    """A Tenant with one agent, created while no operator of its shard runs (its namespace made by hand with the
    tenant label, as the operator would adopt it), so the next operator's first reconcile does all the work."""

    def __init__(self, kube: Cluster, fleet: Fleet, platform_namespace: str, logs: Path):
        self.kube, self.fleet, self.platform_namespace, self.logs = kube, fleet, platform_namespace, logs
        self.shard = f"k{uuid.uuid4().hex[:8]}"
        self.tenant = f"crash-{uuid.uuid4().hex[:6]}"
        self.namespace = f"tenant-{self.tenant}"
        fleet.core.create_namespace({"metadata": {"name": self.namespace, "labels": {labels.TENANT: self.tenant}}})
        fleet.custom.create_cluster_custom_object(GROUP, VERSION, "tenants", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
            "metadata": {"name": self.tenant, "labels": {SHARD_LABEL: self.shard}},
            "spec": {"allowedRegions": ["us-east", "eu-west"], "groups": ["crash-devs"]}})
        fleet.create_agent(self.namespace, "desk", agent_spec())

    def operator(self, **env: str):
        return operator_process(self.kube, self.platform_namespace, self.shard, self.logs, real_workers=False,
                                extra_env={"VOXFLEET_OPERATOR_LEASE_NAME": f"lease-{self.shard}",
                                           "VOXFLEET_OPERATOR_RECONCILE_WORKERS": "1",
                                           "VOXFLEET_OPERATOR_INSTALL_ADMISSION_POLICY": "false", **env})

    def inventory(self) -> dict[str, list[str]]:
        """Every object the operator manages in the namespace, by kind."""
        ns, selector = self.namespace, f"{labels.MANAGED_BY}=voxfleet-operator"
        api = self.fleet.api
        listers = {
            "ConfigMap": client.CoreV1Api(api).list_namespaced_config_map,
            "Service": client.CoreV1Api(api).list_namespaced_service,
            "ServiceAccount": client.CoreV1Api(api).list_namespaced_service_account,
            "Secret": client.CoreV1Api(api).list_namespaced_secret,
            "ResourceQuota": client.CoreV1Api(api).list_namespaced_resource_quota,
            "Deployment": client.AppsV1Api(api).list_namespaced_deployment,
            "PodDisruptionBudget": client.PolicyV1Api(api).list_namespaced_pod_disruption_budget,
            "NetworkPolicy": client.NetworkingV1Api(api).list_namespaced_network_policy,
            "Role": client.RbacAuthorizationV1Api(api).list_namespaced_role,
            "RoleBinding": client.RbacAuthorizationV1Api(api).list_namespaced_role_binding,
        }
        return {kind: sorted(o.metadata.name for o in lister(ns, label_selector=selector).items)
                for kind, lister in listers.items()}

    EXPECTED = {
        "ConfigMap": ["desk-config"], "Service": ["desk"], "ServiceAccount": ["voxfleet-worker"],
        "Secret": ["voxfleet-worker-token"], "ResourceQuota": ["voxfleet-quota"],
        "Deployment": ["desk-eu-west", "desk-us-east"], "PodDisruptionBudget": ["desk-eu-west", "desk-us-east"],
        "NetworkPolicy": ["voxfleet-egress", "voxfleet-ingress"], "Role": ["voxfleet-tenant"],
        "RoleBinding": ["voxfleet-gateway-tenant-secrets", "voxfleet-operator", "voxfleet-tenant"],
    }

    def assert_converged(self, *, edited: bool = False) -> None:
        self.fleet.wait_tenant_ready(self.tenant)
        agent = self.fleet.wait_agent_ready(self.namespace, "desk")
        assert self.inventory() == self.EXPECTED
        assert agent["status"]["readyWorkers"] == 2
        apps = self.fleet.apps
        config_hash = self.fleet.core.read_namespaced_config_map(
            "desk-config", self.namespace).metadata.annotations[labels.CONFIG_HASH]
        for region in ("us-east", "eu-west"):
            sets = apps.list_namespaced_replica_set(self.namespace, label_selector=f"{labels.REGION}={region}").items
            if not edited:  # one ReplicaSet each: no half-applied template ever rolled the pool
                assert len(sets) == 1, [s.metadata.name for s in sets]
            assert len([s for s in sets if s.spec.replicas]) == 1
            wait_for(f"one {region} worker on the current config", lambda: [
                p.metadata.annotations[labels.CONFIG_HASH] for p in self.fleet.pool_pods(
                    self.namespace, "desk", region)] == [config_hash], timeout=20)
        tenant = self.fleet.tenant(self.tenant)
        assert tenant["metadata"]["finalizers"] == ["voxfleet.dev/agents-first"]
        namespace = self.fleet.core.read_namespace(self.namespace)
        assert [o.name for o in namespace.metadata.owner_references] == [self.tenant]

    def tear_down(self, operator) -> None:
        self.fleet.delete_agent(self.namespace, "desk")
        wait_for("the Tenant to count no agent", lambda: self.fleet.tenant(self.tenant)["status"]["agents"] == 0)
        self.fleet.custom.delete_cluster_custom_object(GROUP, VERSION, "tenants", self.tenant)
        wait_for("the Tenant to go", lambda: self.fleet.tenant(self.tenant) is None)
        operator.stop()


@pytest.fixture
def scenario(kube: Cluster, fleet: Fleet, platform_namespace: str, operator_logs: Path) -> Scenario:
    return Scenario(kube, fleet, platform_namespace, operator_logs)


# Kill points, in the order a first reconcile writes (one reconcile worker): the Tenant's finalizer, its
# namespace, quota, network policies, Role, RoleBinding, ServiceAccount, token Secret, Tenant status; then the
# agent's ConfigMap and Service, then (together) a Deployment and a PDB per region, then its status. Each crashing
# process dies right after its first write to the named object; the object named beside it comes later in that
# order, so it has never been written yet.
KILL_POINTS = [
    (r"/tenants/crash-[^/]+$", ("Namespace", None)),                     # finalizer set, no namespace yet
    (r"PATCH /api/v1/namespaces/[^/]+$", ("ResourceQuota", "voxfleet-quota")),  # namespace adopted, empty
    (r"/roles/voxfleet-tenant$", ("RoleBinding", "voxfleet-tenant")),    # RBAC half done
    (r"/configmaps/desk-config$", ("Deployment", "desk-us-east")),       # agent config, no pools
    (r"/deployments/desk-us-east$", ("status", None)),                   # pools (partly) there, no status
]


def test_sigkill_at_each_point_of_a_reconcile_then_restart_converges(scenario: Scenario):
    status_written_early = False
    for pattern, (kind, name) in KILL_POINTS:
        # Tenant and agent reconcile side by side: an earlier kill point's run may already have written this
        # point's object (in its own, checked order); then only a run that had not is judged here.
        before = scenario.inventory() if kind not in ("Namespace", "status") else {}
        status_before = kind == "status" and (scenario.fleet.agent(scenario.namespace, "desk") or {}).get("status")
        crashing = scenario.operator(VOXFLEET_OPERATOR_CRASH_AFTER_WRITES="1",
                                     VOXFLEET_OPERATOR_CRASH_WRITE_PATTERN=pattern).launch()
        assert crashing.wait_exit(timeout=60) == -9, crashing.log()[-2000:]  # SIGKILLed right after that write
        if kind == "Namespace":
            assert scenario.fleet.core.read_namespace(scenario.namespace).metadata.owner_references is None
        elif kind == "status" and status_before:
            status_written_early = True
            print(f"kill after {pattern}: the agent's status was already written by an earlier run")
        elif kind == "status":
            assert scenario.fleet.agent(scenario.namespace, "desk").get("status") is None
        elif name in before[kind]:
            print(f"kill after {pattern}: {kind} {name} was already written by an earlier run")
        else:
            assert name not in scenario.inventory()[kind], f"{kind} {name} written before {pattern}"
    if not status_written_early:  # then no reconcile of the agent ever finished
        assert scenario.fleet.agent(scenario.namespace, "desk").get("status") is None

    restarted = scenario.operator().start()
    scenario.assert_converged()
    scenario.tear_down(restarted)


def test_sigkill_at_random_moments_then_restart_converges(scenario: Scenario):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for round_ in range(2):
        process = scenario.operator().start(wait_leader=False)
        time.sleep(rng.uniform(0.3, 2.5))
        process.kill()
        if round_ == 0:  # mid-life edit while no operator runs
            scenario.fleet.patch_agent(scenario.namespace, "desk", {"greeting": f"take {seed}"})
    final = scenario.operator().start()
    scenario.assert_converged(edited=True)
    assert scenario.fleet.agent(scenario.namespace, "desk")["status"]["observedGeneration"] == 2
    scenario.tear_down(final)


def test_two_replicas_never_both_act_and_the_standby_takes_over(kube: Cluster, fleet: Fleet,
                                                                 platform_namespace: str, operator_logs: Path):
    shard = f"r{uuid.uuid4().hex[:8]}"
    env = {"VOXFLEET_OPERATOR_LEASE_NAME": f"lease-{shard}"}
    fleet_of_shard = Fleet(fleet.api, shard, platform_namespace)
    first = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False, identity="replica-a",
                             extra_env=env).start()
    second = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False,
                              identity="replica-b", extra_env=env).start(wait_leader=False)
    try:
        tenant, namespace = fleet_of_shard.create_tenant()
        fleet_of_shard.wait_tenant_ready(tenant)
        fleet_of_shard.create_agent(namespace, "one", agent_spec())
        fleet_of_shard.wait_agent_ready(namespace, "one")
        assert first.metric("voxfleet_operator_leader") == 1
        assert second.metric("voxfleet_operator_leader") == 0
        assert second.metric("voxfleet_operator_reconciles_total") == 0
        assert second.metric("voxfleet_operator_applies_total") == 0
        assert first.metric("voxfleet_operator_applies_total") > 0

        first.kill()  # no Lease release: the standby must wait the lease out, then act
        killed = time.monotonic()
        wait_for("the standby to lead", lambda: second.metric("voxfleet_operator_leader") == 1, timeout=20)
        took_over = time.monotonic() - killed
        fleet_of_shard.create_agent(namespace, "two", agent_spec())
        fleet_of_shard.wait_agent_ready(namespace, "two")
        assert second.metric("voxfleet_operator_reconciles_total") > 0
        assert 2 <= took_over <= 12, f"took over after {took_over:.1f} s with a 4 s lease"

        # A clean stop hands the Lease over at once.
        third = operator_process(kube, platform_namespace, shard, operator_logs, real_workers=False,
                                 identity="replica-c", extra_env=env).start(wait_leader=False)
        time.sleep(1)
        assert third.metric("voxfleet_operator_leader") == 0
        second.stop()
        assert second.popen.returncode == 0
        stopped = time.monotonic()
        wait_for("the third replica to lead", lambda: third.metric("voxfleet_operator_leader") == 1, timeout=10)
        assert time.monotonic() - stopped < 4
        fleet_of_shard.delete_everything()
        wait_for("the Tenant to go", lambda: fleet_of_shard.tenant(tenant) is None, timeout=30)
        third.stop()
    finally:
        for process in (first, second):
            process.kill()


def test_rbac_lets_a_tenant_group_manage_only_its_own_voiceagents(operator, fleet: Fleet, kube: Cluster):
    mine, my_namespace = fleet.create_tenant("acme", groups=["acme-devs"])
    theirs, their_namespace = fleet.create_tenant("globex", groups=["globex-devs"])
    fleet.wait_tenant_ready(mine)
    fleet.wait_tenant_ready(theirs)
    agent = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent", "metadata": {"name": "bot"},
             "spec": {"regions": [{"name": "us-east", "minWorkers": 0, "maxWorkers": 1}],
                      "scaling": {"bufferSessions": 0}}}

    with kube.api_client() as api:
        api.set_default_header("Impersonate-User", "alice@acme.example")
        api.set_default_header("Impersonate-Group", "acme-devs")
        custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)

        def refused(call) -> int:
            with pytest.raises(ApiException) as error:
                call()
            return error.value.status

        # Allowed: VoiceAgents in the tenant's own namespace.
        custom.create_namespaced_custom_object(GROUP, VERSION, my_namespace, "voiceagents", agent)
        assert [a["metadata"]["name"] for a in custom.list_namespaced_custom_object(
            GROUP, VERSION, my_namespace, "voiceagents")["items"]] == ["bot"]
        custom.patch_namespaced_custom_object(GROUP, VERSION, my_namespace, "voiceagents", "bot",
                                              {"spec": {"greeting": "Hi."}})
        # Refused: another tenant's namespace, anything but VoiceAgents, the status, the Tenants themselves.
        assert refused(lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, their_namespace, "voiceagents", agent)) == 403
        assert refused(lambda: custom.list_namespaced_custom_object(
            GROUP, VERSION, their_namespace, "voiceagents")) == 403
        assert refused(lambda: core.list_namespaced_secret(my_namespace)) == 403
        assert refused(lambda: core.read_namespaced_secret("voxfleet-worker-token", my_namespace)) == 403
        assert refused(lambda: core.list_namespaced_pod(my_namespace)) == 403
        assert refused(lambda: apps.patch_namespaced_deployment("bot-us-east", my_namespace,
                                                                {"spec": {"replicas": 5}})) == 403
        assert refused(lambda: core.create_namespaced_config_map(my_namespace, {"metadata": {"name": "x"}})) == 403
        assert refused(lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, my_namespace, "voiceagents", "bot", {"status": {"readyWorkers": 99}})) == 403
        assert refused(lambda: custom.get_cluster_custom_object(GROUP, VERSION, "tenants", mine)) == 403
        assert refused(lambda: custom.delete_namespaced_custom_object(
            GROUP, VERSION, their_namespace, "voiceagents", "bot")) == 403
        custom.delete_namespaced_custom_object(GROUP, VERSION, my_namespace, "voiceagents", "bot")
