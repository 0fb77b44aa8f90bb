"""What the operator's tests do to the cluster, as a platform team and a tenant would (kubernetes client):
create Tenants and VoiceAgents of one test shard, read them back, wait for the operator, talk to stand-in workers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.operator.operator_process import SHARD_LABEL, worker_headers
from tests.world.waiting import wait_for
from voxfleet.api import labels

GROUP, VERSION = "voxfleet.dev", "v1alpha1"


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return found
    return {}


class Fleet:
    def __init__(self, api: client.ApiClient, shard: str, platform_namespace: str):
        self.api = api
        self.shard = shard
        self.platform_namespace = platform_namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.tenants: list[str] = []

    # --- Tenants --------------------------------------------------------------------------------------------

    def create_tenant(self, prefix: str = "t", **spec: Any) -> tuple[str, str]:
        """A Tenant of this shard; returns (tenant name, its namespace)."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant",
                "metadata": {"name": name, "labels": {SHARD_LABEL: self.shard}},
                "spec": {"allowedRegions": ["us-east", "eu-west", "ap-south"], **spec}}
        self.custom.create_cluster_custom_object(GROUP, VERSION, "tenants", body)
        self.tenants.append(name)
        return name, spec.get("namespace") or f"tenant-{name}"

    def tenant(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_cluster_custom_object(GROUP, VERSION, "tenants", name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def wait_tenant_ready(self, name: str, timeout: float = 75) -> dict[str, Any]:
        # Right after the CRDs are installed the quota controller needs up to 30 s to discover VoiceAgents (it
        # re-discovers every 30 s); the Tenant turns Ready only once its quota counts them.
        return wait_for(f"Tenant {name} Ready", lambda: (t := self.tenant(name))
                        and condition(t, "Ready").get("status") == "True" and t, timeout=timeout)

    # --- VoiceAgents ----------------------------------------------------------------------------------------

    def create_agent(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VoiceAgent",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", body)

    def agent(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch_agent(self, namespace: str, name: str, spec_patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", name,
                                                          {"spec": spec_patch})

    def delete_agent(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents", name)
        except ApiException as error:
            if error.status != 404:
                raise

    def wait_agent(self, namespace: str, name: str, what: str, check: Callable[[dict[str, Any]], bool],
                   timeout: float = 45) -> dict[str, Any]:
        return wait_for(f"VoiceAgent {namespace}/{name}: {what}",
                        lambda: (a := self.agent(namespace, name)) and check(a) and a, timeout=timeout)

    def wait_agent_ready(self, namespace: str, name: str, timeout: float = 45) -> dict[str, Any]:
        def ready(agent: dict[str, Any]) -> bool:
            status = agent.get("status") or {}
            return (condition(agent, "Ready").get("status") == "True"
                    and status.get("observedGeneration") == agent["metadata"]["generation"])
        return self.wait_agent(namespace, name, "Ready at its generation", ready, timeout)

    # --- what the operator made -----------------------------------------------------------------------------

    def deployment(self, namespace: str, name: str) -> client.V1Deployment | None:
        try:
            return self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def pool_pods(self, namespace: str, agent: str, region: str | None = None,
                  include_terminating: bool = False) -> list[client.V1Pod]:
        selector = f"{labels.AGENT}={agent}" + (f",{labels.REGION}={region}" if region else "")
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [p for p in pods if include_terminating or p.metadata.deletion_timestamp is None]

    def ready_pods(self, namespace: str, agent: str, region: str | None = None) -> list[client.V1Pod]:
        return [p for p in self.pool_pods(namespace, agent, region) if p.status.pod_ip and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]

    def events(self, namespace: str, name: str) -> list[client.CoreV1Event]:
        return [e for e in self.core.list_namespaced_event(namespace).items if e.involved_object.name == name]

    def wait_normal_events(self, namespace: str, name: str, *reasons: str, timeout: float = 15) -> dict[str, list[str]]:
        """reason -> messages of the operator's Normal events about the object, once every reason is there
        (they are posted in the background, just after what they report). Printed: what kubectl describe shows."""
        def said() -> dict[str, list[str]] | None:
            found: dict[str, list[str]] = {}
            for event in self.events(namespace, name):
                if event.type == "Normal" and event.source and event.source.component == "voxfleet-operator":
                    found.setdefault(event.reason, []).append(f"{event.message} (x{event.count})")
            return found if set(reasons) <= set(found) else None
        found = wait_for(f"Normal events {', '.join(reasons)} about {namespace}/{name}", said, timeout=timeout)
        for reason, messages in sorted(found.items()):
            print(f"event {namespace}/{name} Normal {reason}: {'; '.join(messages)}")
        return found

    # --- stand-in workers -----------------------------------------------------------------------------------

    @staticmethod
    def set_calls(pod: client.V1Pod, active: int, port: int = 8080) -> None:
        response = httpx.put(f"http://{pod.status.pod_ip}:{port}/standin/active", json={"active": active},
                             headers=worker_headers(pod.metadata.namespace), timeout=5)
        response.raise_for_status()

    # --- cleanup --------------------------------------------------------------------------------------------

    def delete_everything(self) -> None:
        """Agents first (a Tenant with agents refuses deletion), then the Tenants."""
        for name in self.tenants:
            tenant = self.tenant(name)
            if tenant is None:
                continue
            namespace = (tenant.get("status") or {}).get("namespace") or f"tenant-{name}"
            try:
                self.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "voiceagents")
            except ApiException as error:
                print(f"deleting the agents of {name} in {namespace}: {error.status} {error.body!r}"[:500])
        for name in self.tenants:
            try:  # the operator counts the agents down first; the deletion policy refuses before that
                wait_for(f"Tenant {name} without agents", lambda: not ((self.tenant(name) or {}).get(
                    "status") or {}).get("agents"), timeout=20)
                self.custom.delete_cluster_custom_object(GROUP, VERSION, "tenants", name)
            except (ApiException, AssertionError) as error:
                print(f"deleting Tenant {name}: {error}"[:500])
        for name in self.tenants:  # the operator releases its finalizer once the namespace is empty
            try:
                wait_for(f"Tenant {name} gone", lambda: self.tenant(name) is None, timeout=30)
            except AssertionError as error:
                print(error)
