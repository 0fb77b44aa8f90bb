"""One region's warm pool of a VoiceAgent: its Deployment and PodDisruptionBudget (pure: spec in, manifests out).

What the tenant may choose comes from the spec (resources, env, an allow-listed image, session limits); what it
may not (service account, security context, placement, command, platform env) comes from PlatformSettings.
"""

from __future__ import annotations

import json
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.worker_config import WorkerConfig, secret_env_name
from voxfleet.operator.ownership import MANAGED, Owner, metadata, pool_selector
from voxfleet.telemetry import resource_attributes as resource

CONTAINER = "worker"
CONTROL_PORT = "control"
CONFIG_VOLUME = "agent-config"
# Platform settings every worker needs too (its outbound URL policy and log format), forwarded as env.
FORWARDED_PLATFORM_SETTINGS = ("outbound_allowed_cidrs", "log_format", "log_level")
RUN_AS = 10001


def deployment_name(agent: str, region: str) -> str:
    return f"{agent}-{region}"


def config_map_name(agent: str) -> str:
    return f"{agent}-config"


def image_for(config: WorkerConfig, platform: PlatformSettings) -> str:
    """The spec's image only when the platform's allow-list permits it; the caller reports a refusal."""
    image = config.spec.worker.image or platform.worker_image
    if not platform.image_allowed(image):
        raise ValueError(f"image {image!r} is not allowed by the platform")
    return image


def _platform_env(platform: PlatformSettings) -> list[dict[str, Any]]:
    values = platform.model_dump(mode="json", include=set(FORWARDED_PLATFORM_SETTINGS))
    env = []
    for field in FORWARDED_PLATFORM_SETTINGS:
        value = values[field]
        text = value if isinstance(value, str) else json.dumps(value)
        env.append({"name": f"VOXFLEET_{field.upper()}", "value": text})
    return env


def telemetry_env(config: WorkerConfig, region: str, platform: PlatformSettings) -> list[dict[str, Any]]:
    """The standard OTEL_* env of a worker: who it is (service, tenant, agent, region, and its pod and namespace
    through the downward API vars VOXFLEET_POD_NAME/VOXFLEET_POD_NAMESPACE, which must come earlier in the list
    for the kubelet to expand them) and, when the platform has a collector, where and how its spans go."""
    identity = {**platform.telemetry_resource_attributes,
                resource.TENANT: config.tenant, resource.AGENT: config.agent, resource.REGION: region}
    attributes = resource.with_pod_identity(resource.encode(identity), pod_name_var="VOXFLEET_POD_NAME",
                                            namespace_var="VOXFLEET_POD_NAMESPACE")
    env = [{"name": "OTEL_SERVICE_NAME", "value": resource.SERVICE_WORKER},
           {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": attributes}]
    if platform.telemetry_otlp_endpoint:
        env += [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": platform.telemetry_otlp_endpoint},
                {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": platform.telemetry_otlp_protocol},
                {"name": "OTEL_TRACES_SAMPLER", "value": platform.telemetry_traces_sampler},
                {"name": "OTEL_TRACES_SAMPLER_ARG", "value": platform.telemetry_traces_sampler_arg}]
    return env


def worker_env(config: WorkerConfig, region: str, platform: PlatformSettings) -> list[dict[str, Any]]:
    """The worker contract's env: identity, bind address, config path, token, one var per Secret key, the
    tenant's own env (which can't use VOXFLEET_ or OTEL_ names: the schema refuses them), then the telemetry env
    last, so even a spec stored before OTEL_ was reserved can't rename the worker's service or tenant (the
    kubelet lets a later entry win)."""
    env: list[dict[str, Any]] = [
        {"name": "VOXFLEET_REGION", "value": region},
        {"name": "VOXFLEET_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "VOXFLEET_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "VOXFLEET_BIND_HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "VOXFLEET_WORKER_PORT", "value": str(platform.worker_port)},
        {"name": "VOXFLEET_AGENT_CONFIG", "value": f"{labels.AGENT_CONFIG_MOUNT}/{labels.AGENT_CONFIG_KEY}"},
        {"name": "VOXFLEET_WORKER_TOKEN",
         "valueFrom": {"secretKeyRef": {"name": platform.worker_token_secret, "key": labels.WORKER_TOKEN_KEY}}},
        *_platform_env(platform),
    ]
    for ref in config.secret_refs():
        env.append({"name": secret_env_name(ref), "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    for var in config.spec.worker.env:
        if var.secret_key_ref is not None:
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": {"name": var.secret_key_ref.name,
                                                                          "key": var.secret_key_ref.key}}})
        else:
            env.append({"name": var.name, "value": var.value or ""})
    env += telemetry_env(config, region, platform)
    return env


def _resources(config: WorkerConfig) -> dict[str, Any]:
    resources = config.spec.worker.resources
    out: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        values = getattr(resources, kind).model_dump(exclude_none=True)
        if values:
            out[kind] = values
    return out


def _probe(path: str, period: int, failures: int, timeout: int = 1) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": CONTROL_PORT}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def pod_template(config: WorkerConfig, region: str, platform: PlatformSettings, grace_margin: int) -> dict[str, Any]:
    selector = pool_selector(config.tenant, config.agent, region)
    container = {
        "name": CONTAINER,
        "image": image_for(config, platform),
        "command": list(platform.worker_command),
        "ports": [{"name": CONTROL_PORT, "containerPort": platform.worker_port, "protocol": "TCP"}],
        "env": worker_env(config, region, platform),
        "resources": _resources(config),
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": labels.AGENT_CONFIG_MOUNT, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        # Ready only once models are loaded; not ready (503) while draining, so no new calls arrive.
        "readinessProbe": _probe("/readyz", period=2, failures=2),
        "livenessProbe": _probe("/healthz", period=10, failures=3, timeout=2),
        "startupProbe": _probe("/healthz", period=2, failures=90),
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": selector}, "matchLabelKeys": ["pod-template-hash"]}
              for key in (labels.NODE_ZONE, "kubernetes.io/hostname")]
    spec: dict[str, Any] = {
        "serviceAccountName": platform.worker_service_account,
        "automountServiceAccountToken": False,  # workers never talk to the Kubernetes API
        "enableServiceLinks": False,
        # A rollout or scale-down lets the longest call finish before the kubelet kills the process.
        "terminationGracePeriodSeconds": config.spec.limits.max_session_seconds + grace_margin,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": labels.NODE_REGION, "operator": "In", "values": [region]}]}]}}},
        "topologySpreadConstraints": spread,
        "containers": [container],
        "volumes": [{"name": CONFIG_VOLUME, "configMap": {"name": config_map_name(config.agent)}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if platform.worker_node_selector:
        spec["nodeSelector"] = dict(platform.worker_node_selector)
    if platform.worker_tolerations:
        spec["tolerations"] = [dict(t) for t in platform.worker_tolerations]
    return {"metadata": {"labels": selector, "annotations": {labels.CONFIG_HASH: config.config_hash()}},
            "spec": spec}


def build_deployment(owner: Owner, config: WorkerConfig, region: str, replicas: int, platform: PlatformSettings,
                     grace_margin: int = 30) -> dict[str, Any]:
    selector = pool_selector(config.tenant, config.agent, region)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(deployment_name(config.agent, region), config.namespace, {**selector, **MANAGED}, owner),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 3,
            # Never below the warm capacity during a rollout: new pods first, old ones drain afterwards.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "template": pod_template(config, region, platform, grace_margin),
        },
    }


def build_pod_disruption_budget(owner: Owner, config: WorkerConfig, region: str) -> dict[str, Any]:
    """No voluntary eviction (node drain, autoscaler scale-down, descheduler) of a worker that holds a live call.

    It selects only the pool's busy pods: the operator labels a worker SAFE_TO_EVICT=false while it has calls and
    true once idle (voxfleet.operator.eviction_guard). Over the whole pool, maxUnavailable 0 would block every
    eviction forever, idle workers included; a second PDB over the idle ones would match no pod twice, but a
    subset selector with maxUnavailable counts the whole Deployment as expected pods and would block them too.
    So idle workers have no budget: evicted at once, replaced by the Deployment on another node.

    maxUnavailable 0 keeps disruptionsAllowed at 0. IfHealthyBudget (not AlwaysAllow) because a worker told to
    drain turns NotReady while its calls finish: AlwaysAllow would let exactly that worker be evicted.
    """
    selector = pool_selector(config.tenant, config.agent, region)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(deployment_name(config.agent, region), config.namespace, {**selector, **MANAGED}, owner),
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {**selector, labels.SAFE_TO_EVICT: "false"}},
                 "unhealthyPodEvictionPolicy": "IfHealthyBudget"},
    }
