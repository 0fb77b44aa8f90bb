"""Least privilege, proven on the real apiserver: the chart's RBAC (rendered by helm, applied as is) is all the
operator has, and the operator runs as its ServiceAccount (a TokenRequest token, not the world's admin) while it
reconciles a Tenant and an agent that names a tenant secret. Then SubjectAccessReviews (`kubectl auth can-i
--as=system:serviceaccount:...`) show what each component may reach: the operator no Secret outside tenant
namespaces (only the root token, by name, in the platform namespace), the gateway Secrets only in tenant
namespaces; the operator binds only its two ClusterRoles, and cannot escalate to cluster-admin; the chart's
admission policy keeps those bindings, and everything else it writes, to tenant namespaces (RBAC's `bind` is by
role name, not by namespace, and its write rights are cluster-wide because tenant namespaces appear at run time);
VoiceAgents aggregate into the built-in view/edit roles."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import yaml
from kubernetes import client

from tests.chart.helm_render import render, render_text
from tests.chart.service_account_kubeconfig import service_account_kubeconfig
from tests.operator.conftest import operator_process
from tests.operator.fleet import Fleet
from tests.world.waiting import wait_for
from voxfleet.api import labels
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.world.access import Cluster

pytestmark = pytest.mark.world

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
GUARD_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
ROOT_TOKEN = "rbac-test-root-worker-token-0123456789"


def _rbac_of_the_chart(release: str, namespace: str) -> list[dict]:
    """The chart's RBAC objects for this release (the `helm test` hook's own left out), and the admission policy
    that guards the operator's RoleBindings."""
    return [m for m in render(release=release, namespace=namespace)
            if (m["kind"] in RBAC_KINDS and "helm.sh/hook" not in (m["metadata"].get("annotations") or {}))
            or (m["kind"] in GUARD_KINDS and m["metadata"]["name"].endswith("-operator-writes"))]




def _can(kube: Cluster, who: str, *args: str) -> bool:
    """`kubectl auth can-i` as `who`: the apiserver's SubjectAccessReview answer."""
    result = kube.kubectl("auth", "can-i", f"--as={who}", *args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {result.stderr}{result.stdout}"
    return answer == "yes"


@pytest.fixture(scope="module")
def platform(kube: Cluster, installed_crds, tmp_path_factory):
    """The chart's RBAC in a fresh platform namespace, plus the root worker-token Secret the chart would make."""
    release = f"rb{uuid.uuid4().hex[:6]}"
    namespace = kube.new_namespace("vfrbac")
    manifests = _rbac_of_the_chart(release, namespace)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_secret(namespace, {
            "metadata": {"name": "voxfleet-worker-token"},
            "data": {"token": base64.b64encode(ROOT_TOKEN.encode()).decode()}})
    fullname = f"{release}-voxfleet"
    yield {"release": release, "namespace": namespace, "fullname": fullname, "manifests": manifests,
           "operator": f"system:serviceaccount:{namespace}:{fullname}-operator",
           "gateway": f"system:serviceaccount:{namespace}:{fullname}-gateway",
           "logs": tmp_path_factory.mktemp("rbac-operator")}
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                 input=yaml.safe_dump_all([m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding",
                                                                                 *GUARD_KINDS)]),
                 check=False)
    kube.delete_namespace(namespace)


def test_every_rbac_rule_of_the_chart_says_why(platform):
    """Each rule of the components' roles is preceded by a comment giving its reason (the rendered text)."""
    text = render_text(release=platform["release"], namespace=platform["namespace"])
    undocumented = []
    for document in text.split("\n---"):
        if not any(f"kind: {kind}" in document for kind in ("ClusterRole\n", "Role\n")):
            continue
        lines = document.splitlines()
        for index, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:") and not lines[index - 1].strip().startswith("#"):
                undocumented.append(f"{document.split('name: ', 1)[1].splitlines()[0]}: {line.strip()}")
    print(f"rules without a reason: {undocumented}")
    assert undocumented == []


def test_the_operator_as_its_service_account_reconciles_with_no_cluster_wide_secret_right(kube: Cluster, platform):
    namespace, fullname = platform["namespace"], platform["fullname"]
    operator_sa, gateway_sa = platform["operator"], platform["gateway"]
    kubeconfig = service_account_kubeconfig(kube, namespace, f"{fullname}-operator",
                                             platform["logs"] / "operator-kubeconfig")
    shard = f"rb{uuid.uuid4().hex[:8]}"
    process = operator_process(kube, namespace, shard, platform["logs"], real_workers=False, extra_env={
        "VOXFLEET_OPERATOR_INSTALL_ADMISSION_POLICY": "false",  # the chart installs it, not the operator
        "VOXFLEET_OPERATOR_LEASE_NAME": "voxfleet-operator",  # the Lease the chart's Role names
        "VOXFLEET_OPERATOR_SERVICE_ACCOUNT": f"{fullname}-operator",
        "VOXFLEET_OPERATOR_TENANT_CLUSTER_ROLE": f"{fullname}-operator-tenant",
        "VOXFLEET_OPERATOR_GATEWAY_SERVICE_ACCOUNT": f"{fullname}-gateway",
        "VOXFLEET_OPERATOR_GATEWAY_SECRETS_CLUSTER_ROLE": f"{fullname}-gateway-tenant-secrets"})
    process.argv[process.argv.index("--kubeconfig") + 1] = str(kubeconfig)
    outsider = kube.new_namespace("vfrbac-other")
    with kube.api_client() as api:
        fleet = Fleet(api, shard, namespace)
        try:
            # Before any Tenant: no Secret anywhere but the root token, by name.
            before = {
                "operator get secrets -n kube-system": _can(kube, operator_sa, "get", "secrets", "-n", "kube-system"),
                "operator list secrets -A": _can(kube, operator_sa, "list", "secrets", "--all-namespaces"),
                "operator get secrets -n <other>": _can(kube, operator_sa, "get", "secrets", "-n", outsider),
                "operator get secrets -n <platform>": _can(kube, operator_sa, "get", "secrets", "-n", namespace),
                "gateway get secrets -n kube-system": _can(kube, gateway_sa, "get", "secrets", "-n", "kube-system"),
                "gateway create secrets -n <other>": _can(kube, gateway_sa, "create", "secrets", "-n", outsider),
                "gateway list secrets -A": _can(kube, gateway_sa, "list", "secrets", "--all-namespaces"),
            }
            print(f"before reconciling: {before}")
            assert not any(before.values()), before
            assert _can(kube, operator_sa, "get", "secrets/voxfleet-worker-token", "-n", namespace)
            assert _can(kube, operator_sa, "watch", "secrets/voxfleet-worker-token", "-n", namespace)

            process.start()
            tenant, tenant_ns = fleet.create_tenant()
            status = fleet.wait_tenant_ready(tenant)["status"]
            print(f"Tenant reconciled by the operator's own ServiceAccount: {status['conditions']}")
            core = client.CoreV1Api(api)
            written = core.read_namespaced_secret("voxfleet-worker-token", tenant_ns)
            assert base64.b64decode(written.data["token"]).decode() == token_for_namespace(ROOT_TOKEN, tenant_ns)

            after = {
                "operator get secrets -n <tenant>": _can(kube, operator_sa, "get", "secrets", "-n", tenant_ns),
                "operator patch secrets/voxfleet-worker-token -n <tenant>": _can(
                    kube, operator_sa, "patch", "secrets/voxfleet-worker-token", "-n", tenant_ns),
                "gateway create secrets -n <tenant>": _can(kube, gateway_sa, "create", "secrets", "-n", tenant_ns),
                "gateway delete secrets -n <tenant>": _can(kube, gateway_sa, "delete", "secrets", "-n", tenant_ns),
            }
            still_not = {
                "operator get secrets -n kube-system": _can(kube, operator_sa, "get", "secrets", "-n", "kube-system"),
                "operator get secrets -n <other>": _can(kube, operator_sa, "get", "secrets", "-n", outsider),
                "operator list secrets -A": _can(kube, operator_sa, "list", "secrets", "--all-namespaces"),
                "operator patch secrets/other -n <tenant>": _can(kube, operator_sa, "patch", "secrets/other", "-n",
                                                                 tenant_ns),
                "operator bind clusterroles/cluster-admin -n <tenant>": _can(
                    kube, operator_sa, "bind", "clusterroles/cluster-admin", "-n", tenant_ns),
                "gateway get secrets -n kube-system": _can(kube, gateway_sa, "get", "secrets", "-n", "kube-system"),
                "gateway get secrets -n <other>": _can(kube, gateway_sa, "get", "secrets", "-n", outsider),
                "gateway list secrets -A": _can(kube, gateway_sa, "list", "secrets", "--all-namespaces"),
            }
            print(f"after reconciling: allowed {after}; still refused {still_not}")
            assert all(after.values()), after
            assert not any(still_not.values()), still_not

            # The apiserver's escalation check: binding cluster-admin in the tenant namespace is refused.
            escalation = kube.kubectl("-n", tenant_ns, f"--as={operator_sa}", "create", "rolebinding", "grab",
                                      "--clusterrole=cluster-admin", f"--serviceaccount={namespace}:default",
                                      check=False)
            print(f"operator binding cluster-admin: exit {escalation.returncode}: {escalation.stderr.strip()}")
            assert escalation.returncode != 0 and "forbidden" in escalation.stderr.lower()

            # RBAC alone would let it bind its Secret rights anywhere (bind is by role name, not namespace); the
            # chart's admission policy keeps them to tenant namespaces, and keeps it from marking one as a tenant's.
            def operator_binds_in(target: str) -> str:
                return kube.kubectl("-n", target, f"--as={operator_sa}", "create", "rolebinding", "grab",
                                    f"--clusterrole={fullname}-operator-tenant",
                                    f"--serviceaccount={namespace}:{fullname}-operator", check=False).stderr
            refusal = wait_for("the binding guard in force", lambda: (
                err := operator_binds_in("kube-system")) and "only in tenant namespaces" in err and err, timeout=30)
            relabel = kube.kubectl("label", "namespace", outsider, f"--as={operator_sa}",
                                   f"{labels.TENANT}={tenant}", check=False)
            print(f"operator binding its role in kube-system: {refusal.strip()}\n"
                  f"operator marking {outsider} as a tenant's: {relabel.stderr.strip()}")
            assert "only in tenant namespaces" in operator_binds_in(outsider)
            assert relabel.returncode != 0 and "only when it creates it" in relabel.stderr
            # Nor a pod that mounts a Secret there, nor deleting a namespace that is not a tenant's.
            deployment = kube.kubectl("-n", "kube-system", f"--as={operator_sa}", "create", "deployment", "grab",
                                      "--image=registry.example/grab:1", check=False)
            deletion = kube.kubectl("delete", "namespace", outsider, f"--as={operator_sa}", "--wait=false",
                                    check=False)
            print(f"operator Deployment in kube-system: {deployment.stderr.strip()}\n"
                  f"operator deleting {outsider}: {deletion.stderr.strip()}")
            assert "only in tenant namespaces" in deployment.stderr
            assert "deletes only tenant namespaces" in deletion.stderr
            assert not _can(kube, operator_sa, "get", "secrets", "-n", "kube-system")

            # The gateway writes a tenant secret (as its secrets API does); an agent naming it gets workers.
            kube.kubectl("-n", tenant_ns, f"--as={gateway_sa}", "apply", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Secret", "metadata": {
                    "name": "llm-keys", "labels": {labels.TENANT_SECRET: labels.TENANT_SECRET_VALUE}},
                "stringData": {"openai": "sk-rbac-test"}}))
            fleet.create_agent(tenant_ns, "desk", {
                "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 1}],
                "scaling": {"sessionsPerWorker": 1, "bufferSessions": 0},
                "pipeline": {"llm": {"provider": "openai", "secretRef": {"name": "llm-keys", "key": "openai"}}}})
            agent = fleet.wait_agent_ready(tenant_ns, "desk", timeout=60)
            assert agent["status"]["readyWorkers"] == 1
            log = process.log()
            refused = [line for line in log.splitlines() if "Forbidden" in line]
            print(f"operator log lines with Forbidden: {len(refused)}")
            assert refused == [], refused[:5]
            assert ROOT_TOKEN not in log and "sk-rbac-test" not in log
        finally:
            fleet.delete_everything()
            process.stop()
            kube.delete_namespace(outsider)


def test_voiceagents_aggregate_into_the_built_in_view_and_edit_roles(kube: Cluster, platform):
    namespace = kube.new_namespace("vfrbac-agg")
    try:
        kube.kubectl("-n", namespace, "create", "rolebinding", "viewers", "--clusterrole=view", "--user=vera")
        kube.kubectl("-n", namespace, "create", "rolebinding", "editors", "--clusterrole=edit", "--user=eddie")
        # The controller-manager's aggregation controller folds our ClusterRoles into view and edit.
        wait_for("VoiceAgents in view", lambda: _can(kube, "vera", "list", "voiceagents.voxfleet.dev", "-n",
                                                     namespace), timeout=30)
        wait_for("VoiceAgents in edit", lambda: _can(kube, "eddie", "create", "voiceagents.voxfleet.dev", "-n",
                                                     namespace), timeout=30)
        answers = {"view create": _can(kube, "vera", "create", "voiceagents.voxfleet.dev", "-n", namespace),
                   "edit patch status": _can(kube, "eddie", "patch", "voiceagents.voxfleet.dev", "--subresource=status",
                                             "-n", namespace)}
        print(f"aggregated roles: view may not create, edit may not write status: {answers}")
        assert answers == {"view create": False, "edit patch status": False}
    finally:
        kube.delete_namespace(namespace)
