"""Worker Pods made directly by gateway tests (not by the operator), on the world's runner nodes, labelled as the
operator labels them, so the gateway's Pod watch finds them: stand-in workers (tests/gateway/standin_worker.py)
and real `voxfleet worker` processes with a rendered agent config.

Each pod gets its namespace's worker token (derived from the gateway's root, as the operator writes it), filled
in by `create`: the root itself never reaches a worker. Tests that call a worker directly use worker_headers."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.gateway.gateway_process import WORKER_TOKEN
from voxfleet.api import labels
from voxfleet.api.worker_credentials import token_for_namespace
from voxfleet.world.access import Cluster, RunnerPool

STANDIN = Path(__file__).with_name("standin_worker.py")
POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
TOKEN_ENV = "VOXFLEET_WORKER_TOKEN"


def worker_token(namespace: str) -> str:
    """What the workers of `namespace` accept (the gateway derives the same from WORKER_TOKEN, its root)."""
    return token_for_namespace(WORKER_TOKEN, namespace)


def worker_headers(namespace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {worker_token(namespace)}"}


def worker_labels(tenant: str, agent: str, region: str) -> dict[str, str]:
    return {labels.NAME: labels.PART_OF_VALUE, labels.COMPONENT: labels.WORKER_COMPONENT, labels.TENANT: tenant,
            labels.AGENT: agent, labels.REGION: region}


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}


def standin_pod(pods: RunnerPool, *, tenant: str, agent: str, region: str, slots: int, join_rooms: bool = False,
                name: str | None = None, grace_seconds: int = 5, call_seconds: float = 0.0,
                hang: bool = False) -> dict[str, Any]:
    name = name or f"{agent}-{region}-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, str(STANDIN), "--host", "$(POD_IP)", "--port", "8080", "--slots", str(slots),
               "--tenant", tenant, "--agent", agent, "--region", region, "--pod", name,
               "--drain-seconds", str(grace_seconds)]
    if join_rooms:
        command.append("--join-rooms")
    if call_seconds:
        command += ["--call-seconds", str(call_seconds)]
    if hang:
        command.append("--hang")
    container = {"name": "worker", "image": "voxfleet/standin", "command": command,
                 "env": [POD_IP_ENV],
                 "readinessProbe": _probe("/readyz")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": worker_labels(tenant, agent, region)},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": grace_seconds,
                     **pods.placement(region)}}


def real_worker_pod(pods: RunnerPool, *, tenant: str, agent: str, region: str, namespace: str, config_map: str,
                    name: str | None = None, grace_seconds: int = 10, extra_env: dict[str, str] | None = None
                    ) -> dict[str, Any]:
    """A `voxfleet worker` pod as the operator would make it (the worker contract's env, config mounted)."""
    name = name or f"{agent}-{region}-{uuid.uuid4().hex[:6]}"
    env = [{"name": "VOXFLEET_REGION", "value": region},
           {"name": "VOXFLEET_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "VOXFLEET_BIND_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "VOXFLEET_WORKER_PORT", "value": "8080"},
           {"name": "VOXFLEET_AGENT_CONFIG", "value": f"{labels.AGENT_CONFIG_MOUNT}/{labels.AGENT_CONFIG_KEY}"},
           {"name": "VOXFLEET_LOG_FORMAT", "value": "json"},
           *({"name": k, "value": v} for k, v in (extra_env or {}).items())]
    container = {"name": "worker", "image": "voxfleet/voxfleet", "command": ["voxfleet", "worker"], "env": env,
                 "ports": [{"name": "control", "containerPort": 8080, "protocol": "TCP"}],  # the PodMonitor's port
                 "volumeMounts": [{"name": "config", "mountPath": labels.AGENT_CONFIG_MOUNT, "readOnly": True}],
                 "readinessProbe": _probe("/readyz")}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": worker_labels(tenant, agent, region)},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": grace_seconds,
                     "volumes": [{"name": "config", "configMap": {"name": config_map}}],
                     **pods.placement(region)}}


def agent_config_map(namespace: str, name: str, *, tenant: str, agent: str, spec: dict[str, Any]) -> dict[str, Any]:
    config = {"tenant": tenant, "agent": agent, "namespace": namespace, "generation": 1, "spec": spec}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {labels.AGENT_CONFIG_KEY: json.dumps(config)}}


def create(kube: Cluster, namespace: str, manifests: list[dict[str, Any]]) -> list[str]:
    for manifest in manifests:
        for container in manifest["spec"]["containers"] if manifest["kind"] == "Pod" else []:
            container["env"] = [e for e in container.get("env", []) if e["name"] != TOKEN_ENV] + [
                {"name": TOKEN_ENV, "value": worker_token(namespace)}]
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        for manifest in manifests:
            if manifest["kind"] == "ConfigMap":
                core.create_namespaced_config_map(namespace, manifest)
            else:
                core.create_namespaced_pod(namespace, manifest)
    return [m["metadata"]["name"] for m in manifests if m["kind"] == "Pod"]


def _ready(pod: Any) -> bool:
    return bool(pod.status.pod_ip) and any(c.type == "Ready" and c.status == "True"
                                           for c in pod.status.conditions or [])


def wait_ready(kube: Cluster, namespace: str, names: list[str], timeout: float = 90.0,
               pods: RunnerPool | None = None) -> dict[str, str]:
    """Pod name -> pod IP once every named pod is Ready."""
    deadline = time.monotonic() + timeout
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        while True:
            found = {p.metadata.name: p for p in core.list_namespaced_pod(namespace).items}
            ready = {n: found[n].status.pod_ip for n in names if n in found and _ready(found[n])}
            if len(ready) == len(names):
                return ready
            if time.monotonic() > deadline:
                missing = sorted(set(names) - set(ready))
                tail = pods.log(namespace, missing[0], "worker")[-2000:] if pods else ""
                raise AssertionError(f"worker pods not Ready within {timeout:.0f} s: {missing}\n{tail}")
            time.sleep(0.1)


def delete(kube: Cluster, namespace: str, name: str, *, grace_seconds: int | None = None) -> None:
    with kube.api_client() as api:
        try:
            client.CoreV1Api(api).delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)
        except ApiException as error:
            if error.status != 404:
                raise


def wait_gone(kube: Cluster, namespace: str, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        while True:
            try:
                core.read_namespaced_pod(name, namespace)
            except ApiException as error:
                if error.status == 404:
                    return
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {namespace}/{name} still there after {timeout:.0f} s")
            time.sleep(0.1)
