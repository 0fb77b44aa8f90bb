"""What a VoiceAgent gets once, for all its regions: the ConfigMap with the rendered worker config and a headless
Service (DNS and metrics discovery). Pure: spec in, manifests out."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from voxfleet.api import labels
from voxfleet.api.settings import PlatformSettings
from voxfleet.api.worker_config import WorkerConfig
from voxfleet.operator.ownership import Owner, agent_labels, metadata
from voxfleet.operator.pool_builder import CONTROL_PORT, config_map_name
from voxfleet.operator.tenant_builder import parse_quantity

MIB = 2**20
# Unset memoryRecycleMb: recycle at 90% of the container's memory limit, leaving the last tenth for the live
# calls to finish in (they keep growing while the worker drains) before the kubelet would OOM-kill them all.
DEFAULT_RECYCLE_SHARE = Decimal("0.9")


def memory_recycle_mb(spec: Any) -> int | None:
    """The RSS in MiB past which the agent's workers recycle: the spec's, else 90% of the memory limit, else none."""
    if spec.limits.memory_recycle_mb is not None:
        return spec.limits.memory_recycle_mb
    memory = spec.worker.resources.limits.memory
    if not memory:
        return None
    return max(1, int(parse_quantity(memory) * DEFAULT_RECYCLE_SHARE / MIB))


def worker_config(tenant: str, body: dict[str, Any], spec: Any) -> WorkerConfig:
    meta = body["metadata"]
    return WorkerConfig(tenant=tenant, agent=meta["name"], namespace=meta["namespace"],
                        generation=int(meta.get("generation") or 0), spec=spec,
                        memory_recycle_mb=memory_recycle_mb(spec))


def build_config_map(owner: Owner, config: WorkerConfig) -> dict[str, Any]:
    """The rendered config only: secrets reach workers as env from secretKeyRef, never through this."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(config_map_name(config.agent), config.namespace,
                             agent_labels(config.tenant, config.agent), owner,
                             {labels.CONFIG_HASH: config.config_hash()}),
        "data": {labels.AGENT_CONFIG_KEY: config.render()},
    }


def build_service(owner: Owner, config: WorkerConfig, platform: PlatformSettings) -> dict[str, Any]:
    """Headless, and listing not-ready pods too: draining workers still serve metrics."""
    selector = {labels.NAME: labels.PART_OF_VALUE, labels.COMPONENT: labels.WORKER_COMPONENT,
                labels.TENANT: config.tenant, labels.AGENT: config.agent}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(config.agent, config.namespace, agent_labels(config.tenant, config.agent), owner),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector,
            "ports": [{"name": CONTROL_PORT, "port": platform.worker_port, "targetPort": CONTROL_PORT,
                       "protocol": "TCP"}],
        },
    }
