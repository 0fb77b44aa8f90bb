"""Sample Tenant and VoiceAgent specs for the operator's tests (wire form, as kubectl would send them)."""

from __future__ import annotations

import copy
from typing import Any

from voxfleet.api.settings import PlatformSettings
from voxfleet.api.voiceagent import VoiceAgentSpec
from voxfleet.api.worker_config import WorkerConfig

AGENT_SPEC: dict[str, Any] = {
    "greeting": "Hello, this is Acme support.",
    "pipeline": {"llm": {"provider": "openai", "model": "gpt-4o-mini",
                         "secretRef": {"name": "llm-keys", "key": "openai"}}},
    "tools": [{"name": "lookup_order", "http": {"url": "https://api.acme.example/orders",
                                               "headers": [{"name": "X-Api-Key",
                                                            "secretKeyRef": {"name": "tool-keys", "key": "orders"}}]}}],
    "regions": [{"name": "us-east", "minWorkers": 1, "maxWorkers": 5},
                {"name": "eu-west", "minWorkers": 0, "maxWorkers": 3}],
    "scaling": {"sessionsPerWorker": 4, "bufferSessions": 2, "scaleDownDelaySeconds": 30},
    "worker": {"env": [{"name": "FEATURE_X", "value": "on"},
                       {"name": "CRM_TOKEN", "secretKeyRef": {"name": "tool-keys", "key": "crm"}}]},
    "limits": {"maxSessionSeconds": 600},
}


def agent_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(AGENT_SPEC)
    spec.update(changes)
    return spec


def worker_config(spec: dict[str, Any] | None = None, generation: int = 3) -> WorkerConfig:
    return WorkerConfig(tenant="acme", agent="support", namespace="tenant-acme", generation=generation,
                        spec=VoiceAgentSpec.model_validate(spec or AGENT_SPEC))


def platform(**changes: Any) -> PlatformSettings:
    values: dict[str, Any] = {
        "platform_namespace": "voxfleet-system", "worker_image": "registry.example/voxfleet:1.0",
        "allowed_worker_images": ["registry.example/voxfleet-*"], "worker_command": ["voxfleet", "worker"],
        "worker_port": 8080, "worker_node_selector": {"voxfleet.dev/pool": "voice"},
        "worker_tolerations": [{"key": "voxfleet.dev/pool", "operator": "Equal", "value": "voice",
                                "effect": "NoSchedule"}],
        "outbound_allowed_cidrs": ["127.0.0.1/32"],
    }
    values.update(changes)
    return PlatformSettings(_env_file=None, **values)
