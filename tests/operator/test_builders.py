"""The pure builders: specs in, manifests out (no cluster). The manifests' acceptance by a real apiserver is
checked in test_reconcile.py; here the contract and the security-relevant fields are pinned down."""

from __future__ import annotations

import base64
import json

import pytest

from voxfleet.api import labels
from voxfleet.api.worker_config import secret_env_name
from voxfleet.operator.agent_builder import build_config_map, build_service
from voxfleet.operator.ownership import Owner
from voxfleet.operator.pool_builder import build_deployment, build_pod_disruption_budget
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.operator.settings import OperatorSettings
from voxfleet.operator.tenant_builder import (PRIVATE_V4, build_limit_range, build_namespace,
                                              build_network_policies, build_resource_quota, build_role,
                                              build_role_binding, build_tenant_objects)
from voxfleet.operator.tenant_deletion_policy import build_tenant_deletion_policy
from voxfleet.api.tenant import TenantSpec
from tests.operator.specs import agent_spec, platform, worker_config

AGENT = Owner(kind="VoiceAgent", name="support", uid="uid-agent", namespace="tenant-acme")
TENANT = Owner(kind="Tenant", name="acme", uid="uid-tenant")


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _env(deployment: dict) -> dict[str, dict]:
    return {var["name"]: var for var in _container(deployment)["env"]}


def test_deployment_is_the_region_pool_pinned_to_its_region():
    deployment = build_deployment(AGENT, worker_config(), "eu-west", 2, platform())
    assert deployment["metadata"]["name"] == "support-eu-west"
    assert deployment["metadata"]["namespace"] == "tenant-acme"
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == {
        labels.NAME: "voxfleet", labels.COMPONENT: "voice-worker", labels.TENANT: "acme",
        labels.AGENT: "support", labels.REGION: "eu-west"}
    assert deployment["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [{"matchExpressions": [
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west"]}]}]
    zones = [c for c in pod["spec"]["topologySpreadConstraints"] if c["topologyKey"] == labels.NODE_ZONE]
    assert zones and zones[0]["labelSelector"]["matchLabels"] == pod["metadata"]["labels"]
    # The platform's voice node pool, on every pool.
    assert pod["spec"]["nodeSelector"] == {"voxfleet.dev/pool": "voice"}
    assert pod["spec"]["tolerations"][0]["key"] == "voxfleet.dev/pool"
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("VoiceAgent", "uid-agent", True)


def test_deployment_rolls_without_losing_capacity_and_lets_calls_finish():
    deployment = build_deployment(AGENT, worker_config(), "us-east", 1, platform(), grace_margin=30)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 600 + 30
    assert deployment["spec"]["template"]["metadata"]["annotations"][labels.CONFIG_HASH] == \
        worker_config().config_hash()


def test_spec_edit_changes_the_pod_template_hash():
    before = build_deployment(AGENT, worker_config(), "us-east", 1, platform())
    after = build_deployment(AGENT, worker_config(agent_spec(greeting="Hi there")), "us-east", 1, platform())
    key = labels.CONFIG_HASH
    assert before["spec"]["template"]["metadata"]["annotations"][key] != \
        after["spec"]["template"]["metadata"]["annotations"][key]


def test_worker_contract_env_probes_and_command():
    settings = platform()
    deployment = build_deployment(AGENT, worker_config(), "us-east", 1, settings)
    container = _container(deployment)
    env = _env(deployment)
    assert container["command"] == ["voxfleet", "worker"]
    assert container["image"] == "registry.example/voxfleet:1.0"
    assert env["VOXFLEET_REGION"]["value"] == "us-east"
    assert env["VOXFLEET_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["VOXFLEET_BIND_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["VOXFLEET_WORKER_PORT"]["value"] == "8080"
    assert env["VOXFLEET_AGENT_CONFIG"]["value"] == f"{labels.AGENT_CONFIG_MOUNT}/{labels.AGENT_CONFIG_KEY}"
    assert env["VOXFLEET_WORKER_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": settings.worker_token_secret, "key": labels.WORKER_TOKEN_KEY}
    assert json.loads(env["VOXFLEET_OUTBOUND_ALLOWED_CIDRS"]["value"]) == ["127.0.0.1/32"]
    for ref in worker_config().secret_refs():
        assert env[secret_env_name(ref)]["valueFrom"]["secretKeyRef"] == {"name": ref.name, "key": ref.key}
    assert env["FEATURE_X"]["value"] == "on"
    assert env["CRM_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tool-keys", "key": "crm"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["agent-config"] == labels.AGENT_CONFIG_MOUNT
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["agent-config"]["configMap"]["name"] == "support-config"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"] == [{"name": "control", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}


def test_pods_are_restricted_and_use_the_platforms_service_account():
    settings = platform(worker_service_account="vf-worker")
    pod = build_deployment(AGENT, worker_config(), "us-east", 1, settings)["spec"]["template"]["spec"]
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["runAsNonRoot"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == "vf-worker"
    assert pod["automountServiceAccountToken"] is False


def test_image_from_the_spec_only_when_the_allow_list_permits_it():
    allowed = worker_config(agent_spec(worker={"image": "registry.example/voxfleet-gpu:2"}))
    assert _container(build_deployment(AGENT, allowed, "us-east", 1, platform()))["image"] == \
        "registry.example/voxfleet-gpu:2"
    refused = worker_config(agent_spec(worker={"image": "evil.example/miner:latest"}))
    with pytest.raises(ValueError, match="not allowed"):
        build_deployment(AGENT, refused, "us-east", 1, platform())


def test_secrets_are_referenced_never_copied():
    config_map = build_config_map(AGENT, worker_config())
    rendered = config_map["data"][labels.AGENT_CONFIG_KEY]
    assert json.loads(rendered)["agent"] == "support"
    assert config_map["metadata"]["name"] == "support-config"
    # The spec names Secrets (name/key); their values can't be in it, and no env value carries one.
    assert "secretRef" in rendered
    deployment = build_deployment(AGENT, worker_config(), "us-east", 1, platform())
    secret_vars = [v for v in _container(deployment)["env"] if "secretKeyRef" in v.get("valueFrom", {})]
    assert len(secret_vars) == 4  # token, llm key, tool header, CRM_TOKEN
    assert all("value" not in v for v in secret_vars)


def test_pdb_and_headless_service():
    pdb = build_pod_disruption_budget(AGENT, worker_config(), "us-east")
    assert pdb["metadata"]["name"] == "support-us-east"
    # Only the pool's busy workers (marked by the eviction guard): none of them may be evicted; idle ones have no
    # budget at all (over the whole pool, maxUnavailable 0 would block every eviction forever).
    assert pdb["spec"]["maxUnavailable"] == 0
    assert pdb["spec"]["selector"]["matchLabels"][labels.REGION] == "us-east"
    assert pdb["spec"]["selector"]["matchLabels"][labels.SAFE_TO_EVICT] == "false"
    # A busy worker told to drain turns NotReady while its calls finish: AlwaysAllow would let it be evicted.
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "IfHealthyBudget"
    service = build_service(AGENT, worker_config(), platform())
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"][labels.AGENT] == "support"
    assert labels.REGION not in service["spec"]["selector"]
    assert service["spec"]["ports"][0]["port"] == 8080


def test_tenant_namespace_quota_and_rbac():
    spec = TenantSpec.model_validate({"groups": ["acme-admins", "acme-devs"], "allowedRegions": ["us-east"],
                                      "quotas": {"maxWorkers": 12, "maxAgents": 3}})
    namespace = build_namespace(TENANT, "tenant-acme")
    assert namespace["metadata"]["labels"][labels.TENANT] == "acme"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["metadata"]["ownerReferences"][0]["kind"] == "Tenant"
    quota = build_resource_quota(TENANT, "tenant-acme", spec)
    assert quota["spec"]["hard"] == {"pods": "12", "count/voiceagents.voxfleet.dev": "3",
                                     "requests.cpu": "20", "limits.cpu": "20",
                                     "requests.memory": "40Gi", "limits.memory": "40Gi"}
    role = build_role(TENANT, "tenant-acme")
    resources = {r for rule in role["rules"] for r in rule["resources"]}
    assert resources == {"voiceagents", "voiceagents/status"}
    status_rule = next(rule for rule in role["rules"] if rule["resources"] == ["voiceagents/status"])
    assert set(status_rule["verbs"]) == {"get", "list", "watch"}
    binding = build_role_binding(TENANT, "tenant-acme", spec)
    assert [s["name"] for s in binding["subjects"]] == ["acme-admins", "acme-devs"]
    assert all(s["kind"] == "Group" for s in binding["subjects"])


def test_network_policies_isolate_tenants():
    settings = platform(platform_namespace="vf-system", worker_port=9000)
    ingress, egress = build_network_policies(TENANT, "tenant-acme", settings)
    assert ingress["spec"]["podSelector"] == {}
    [rule] = ingress["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vf-system"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
    public = next(r for r in egress["spec"]["egress"] if any("ipBlock" in t and t["ipBlock"]["cidr"] == "0.0.0.0/0"
                                                             for t in r["to"]))
    excluded = public["to"][0]["ipBlock"]["except"]
    assert "169.254.0.0/16" in excluded and "10.0.0.0/8" in excluded and excluded == PRIVATE_V4
    # The platform's explicit exceptions (tests: loopback) are allowed back.
    assert {"to": [{"ipBlock": {"cidr": "127.0.0.1/32"}}]} in egress["spec"]["egress"]


def test_the_tenant_namespace_gets_its_derived_worker_token_never_the_root():
    spec = TenantSpec.model_validate({"allowedRegions": ["us-east"]})
    settings = OperatorSettings()
    objects = build_tenant_objects(TENANT, "tenant-acme", spec, platform(), settings, b"s3cret-root")
    secret = next(o for o in objects if o["kind"] == "Secret")
    written = base64.b64decode(secret["data"][labels.WORKER_TOKEN_KEY]).decode()
    assert written == token_for_namespace(b"s3cret-root", "tenant-acme") and "s3cret-root" not in written
    assert secret["metadata"]["name"] == platform().worker_token_secret
    assert labels.TENANT_SECRET not in secret["metadata"]["labels"]  # no VoiceAgent may name it
    assert not any(o["kind"] == "Secret" for o in build_tenant_objects(TENANT, "tenant-acme", spec, platform(),
                                                                         settings, None))
    kinds = [o["kind"] for o in objects]
    assert kinds.count("NetworkPolicy") == 2 and "ServiceAccount" in kinds and "ResourceQuota" in kinds
    assert "LimitRange" in kinds
    # The operator's own binding comes before the Secret it lets the operator write.
    assert kinds.index("RoleBinding") < kinds.index("Secret")


def test_operator_and_gateway_get_their_rights_by_rolebinding_in_the_tenant_namespace_only():
    spec = TenantSpec.model_validate({"allowedRegions": ["us-east"]})
    settings = OperatorSettings(service_account="op-sa", gateway_service_account="gw-sa")
    objects = build_tenant_objects(TENANT, "tenant-acme", spec, platform(platform_namespace="vf-system"), settings,
                                   None)
    bindings = {o["metadata"]["name"]: o for o in objects if o["kind"] == "RoleBinding"}
    operator, gateway = bindings["voxfleet-operator"], bindings["voxfleet-gateway-tenant-secrets"]
    assert operator["metadata"]["namespace"] == gateway["metadata"]["namespace"] == "tenant-acme"
    assert operator["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                   "name": "voxfleet-operator-tenant"}
    assert operator["subjects"] == [{"kind": "ServiceAccount", "name": "op-sa", "namespace": "vf-system"}]
    assert gateway["roleRef"]["name"] == "voxfleet-gateway-tenant-secrets"
    assert gateway["subjects"] == [{"kind": "ServiceAccount", "name": "gw-sa", "namespace": "vf-system"}]


def test_limit_range_caps_each_worker_and_defaults_stay_under_the_cap():
    spec = TenantSpec.model_validate({"allowedRegions": ["us-east"]})
    [limits] = build_limit_range(TENANT, "tenant-acme", spec)["spec"]["limits"]
    assert limits == {"type": "Container", "max": {"cpu": "4", "memory": "8Gi"},
                      "default": {"cpu": "1", "memory": "1Gi"}, "defaultRequest": {"cpu": "500m", "memory": "512Mi"}}
    small = TenantSpec.model_validate({"allowedRegions": ["us-east"],
                                       "quotas": {"maxWorkerCpu": "250m", "maxWorkerMemory": "256Mi"}})
    [limits] = build_limit_range(TENANT, "tenant-acme", small)["spec"]["limits"]
    assert limits["default"] == limits["defaultRequest"] == limits["max"] == {"cpu": "250m", "memory": "256Mi"}


def test_tenant_deletion_policy_refuses_on_agents():
    policy, binding = build_tenant_deletion_policy()
    rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
    assert rule["operations"] == ["DELETE"] and rule["resources"] == ["tenants"]
    assert "status.agents" in policy["spec"]["validations"][0]["expression"]
    assert binding["spec"]["validationActions"] == ["Deny"]
