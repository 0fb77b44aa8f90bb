"""Tenants for gateway tests: a Tenant object, its namespace and API keys made with `voxfleet keys`.

The operator normally creates the tenant's namespace; gateway tests create it themselves so they don't depend
on the operator's progress. Names are unique, so tests in parallel workers never meet.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.security import secret_ledger
from tests.world.waiting import wait_for
from voxfleet.api.tenant import PLURAL
from voxfleet.api.voiceagent import GROUP, VERSION
from voxfleet.gateway import keys_cli
from voxfleet.world.access import Cluster


class KeyHeaders(dict):
    """Request headers carrying an API key, shown redacted: pytest prints a failing test's fixture values (and
    an assertion's operands) into the run's logs, which the whole-run log scan rightly counts as a leak."""

    def __repr__(self) -> str:
        return repr({name: "[redacted]" for name in self})


def key_headers(key: str) -> KeyHeaders:
    return KeyHeaders({"Authorization": f"Bearer {key}"})


@dataclass
class TenantUnderTest:
    name: str
    namespace: str
    keys: list[str] = field(default_factory=list, repr=False)  # tracebacks show fixtures: never a key

    @property
    def key(self) -> str:
        return self.keys[0]

    def headers(self, key: str | None = None) -> dict[str, str]:
        return key_headers(key or self.key)


def run_keys_cli(kubeconfig: Path, platform_namespace: str, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = keys_cli.main(["--kubeconfig", str(kubeconfig), "--namespace", platform_namespace, *args])
    return code, out.getvalue(), err.getvalue()


def create_key(kube: Cluster, platform_namespace: str, tenant: str, description: str = "test") -> str:
    code, out, err = run_keys_cli(kube.kubeconfig, platform_namespace, "create", "--tenant", tenant,
                                  "--description", description)
    assert code == 0, err
    return secret_ledger.record(out.strip(), f"API key of tenant {tenant}")  # for the whole-run log scan


def create_tenant(kube: Cluster, platform_namespace: str, *, allowed_regions: list[str],
                  quotas: dict[str, Any] | None = None, prefix: str = "tn") -> TenantUnderTest:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    namespace = kube.new_namespace(name)
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"namespace": namespace, "allowedRegions": allowed_regions, "quotas": quotas or {}}}
    with kube.api_client() as api:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    tenant = TenantUnderTest(name=name, namespace=namespace)
    tenant.keys.append(create_key(kube, platform_namespace, name))
    return tenant


def delete_tenant(kube: Cluster, tenant: TenantUnderTest) -> None:
    with kube.api_client() as api, contextlib.suppress(client.exceptions.ApiException):
        client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, tenant.name)
    kube.delete_namespace(tenant.namespace)


def wait_until_served(http, timeout: float = 15.0) -> None:
    """Until the gateway knows the client's key and its Tenant: both arrive through the gateway's informers,
    a moment after they were written, and a request in between gets 401/403, or 503 tenant_loading once the key
    was read through but the Tenant has not arrived yet."""
    wait_for("the gateway to serve the new tenant's key",
             lambda: http.get("/v1/agents").status_code not in (401, 403, 503), timeout=timeout, interval=0.1)
