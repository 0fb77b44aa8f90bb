"""The gateway as its own ServiceAccount (a TokenRequest token, not the world's admin), with exactly the chart's RBAC
and the RoleBinding the operator writes in each tenant namespace (built by the operator's own builder): the
secrets API and the agents API's reference check work there, are refused in a tenant namespace the operator has
not bound yet (503 naming the cause, nothing written), and once bound the gateway's log has no Forbidden."""

from __future__ import annotations

import uuid

import httpx
import pytest
import yaml

from tests.chart.service_account_kubeconfig import service_account_kubeconfig
from tests.chart.test_chart_rbac import _rbac_of_the_chart
from tests.gateway.gateway_process import GatewayProcess
from tests.gateway.tenant_setup import create_tenant, delete_tenant
from voxfleet.api.settings import PlatformSettings
from voxfleet.operator.ownership import Owner
from voxfleet.operator.settings import OperatorSettings
from voxfleet.operator.tenant_builder import build_gateway_secrets_binding

pytestmark = pytest.mark.world


@pytest.fixture(scope="module")
def release(kube, installed_crds):
    name = f"gs{uuid.uuid4().hex[:6]}"
    namespace = kube.new_namespace("vfgwsa")
    manifests = _rbac_of_the_chart(name, namespace)
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
    yield {"name": name, "namespace": namespace, "fullname": f"{name}-voxfleet"}
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", check=False, input=yaml.safe_dump_all(
        [m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]))
    kube.delete_namespace(namespace)


@pytest.fixture(scope="module")
def gateway(kube, release, tmp_path_factory):
    logs = tmp_path_factory.mktemp("gateway-sa")
    kubeconfig = service_account_kubeconfig(kube, release["namespace"], f"{release['fullname']}-gateway",
                                             logs / "gateway-kubeconfig")
    process = GatewayProcess(kubeconfig=kubeconfig, platform_namespace=release["namespace"],
                             log_path=logs / "gateway.log")
    process.start()
    yield process
    process.stop()


def _bind_like_the_operator(kube, release, tenant) -> None:
    binding = build_gateway_secrets_binding(
        Owner(kind="Tenant", name=tenant.name, uid=""), tenant.namespace,
        PlatformSettings(platform_namespace=release["namespace"]),
        OperatorSettings(gateway_service_account=f"{release['fullname']}-gateway",
                         gateway_secrets_cluster_role=f"{release['fullname']}-gateway-tenant-secrets"))
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(binding))


def test_the_secrets_api_works_with_the_rights_the_operator_grants_and_only_there(kube, release, gateway):
    # Keys are made with the admin's rights (`voxfleet keys` is a platform admin's tool).
    tenant = create_tenant(kube, release["namespace"], allowed_regions=["us-east"], prefix="gwsa")
    try:
        with httpx.Client(base_url=gateway.url, headers=tenant.headers(), timeout=15) as http:
            unbound = http.put("/v1/secrets/llm", json={"data": {"openai": "sk-sa-test"}})
            print(f"before the operator's RoleBinding: {unbound.status_code} {unbound.json()['code']}")
            assert unbound.status_code == 503 and unbound.json()["code"] == "gateway_forbidden", unbound.text
            assert unbound.headers["Retry-After"]

            _bind_like_the_operator(kube, release, tenant)
            bound_from = len(gateway.log())  # the 403 just provoked is in the log before this point
            written = http.put("/v1/secrets/llm", json={"data": {"openai": "sk-sa-test"}})
            assert written.status_code == 201, written.text
            assert [s["name"] for s in http.get("/v1/secrets").json()["items"]] == ["llm"]
            agent = {"regions": [{"name": "us-east", "minWorkers": 0}],
                     "pipeline": {"llm": {"provider": "openai", "secretRef": {"name": "llm", "key": "openai"}}}}
            assert http.put("/v1/agents/desk", json=agent).status_code == 201
            missing = http.put("/v1/agents/desk", json={
                **agent, "pipeline": {"llm": {"provider": "openai", "secretRef": {"name": "nope", "key": "x"}}}})
            assert missing.status_code == 422
            assert missing.json()["details"][0]["field"] == "pipeline.llm.secretRef.name"
            assert http.delete("/v1/agents/desk").status_code == 204
    finally:
        delete_tenant(kube, tenant)
    log = gateway.log()
    assert "sk-sa-test" not in log
    refused = [line for line in log[bound_from:].splitlines() if "Forbidden" in line]
    print(f"gateway log lines with Forbidden once bound: {len(refused)}")
    assert refused == [], refused[:5]
