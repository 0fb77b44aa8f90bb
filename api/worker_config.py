"""The rendered agent config the operator writes into a ConfigMap and every worker of the agent loads.

Secrets never enter it: each SecretKeyRef in the spec becomes an env var of the worker pod (valueFrom
secretKeyRef) whose name `secret_env_name` derives from the reference, so operator and worker agree on it
without sharing anything else.
"""

from __future__ import annotations

import hashlib
import json
import os

from pydantic import Field

from voxfleet.api.common import SecretKeyRef
from voxfleet.api.model_base import ApiModel
from voxfleet.api.voiceagent import VoiceAgentSpec


class WorkerConfig(ApiModel):
    """Everything a worker needs to serve one agent (the same for all its regions)."""

    tenant: str = Field(description="Tenant name.")
    agent: str = Field(description="VoiceAgent name.")
    namespace: str = Field(description="The tenant's namespace.")
    generation: int = Field(default=0, description="VoiceAgent metadata.generation this was rendered from.")
    spec: VoiceAgentSpec
    memory_recycle_mb: int | None = Field(
        default=None, ge=1, description="Resolved by the operator: spec.limits.memoryRecycleMb, else 90% of"
                                        " worker.resources.limits.memory; unset: the worker never recycles.")

    def render(self) -> str:
        """Canonical JSON: the same spec always renders the same bytes (and so the same hash)."""
        return json.dumps(self.to_wire(), sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        return hashlib.sha256(self.render().encode()).hexdigest()[:16]

    def secret_refs(self) -> list[SecretKeyRef]:
        """Every Secret key the spec references (provider keys, tool headers), deduplicated, in spec order."""
        refs: list[SecretKeyRef] = []
        pipeline = self.spec.pipeline
        for stage in (pipeline.stt, pipeline.llm, pipeline.tts):
            if stage.secret_ref is not None:
                refs.append(stage.secret_ref)
        for tool in self.spec.tools:
            refs.extend(header.secret_key_ref for header in tool.http.headers if header.secret_key_ref)
        unique: dict[tuple[str, str], SecretKeyRef] = {}
        for ref in refs:
            unique.setdefault((ref.name, ref.key), ref)
        return list(unique.values())


def secret_env_name(ref: SecretKeyRef) -> str:
    """Env var through which a worker pod receives the value of one Secret key."""
    digest = hashlib.sha256(f"{ref.name}/{ref.key}".encode()).hexdigest()[:12].upper()
    return f"VOXFLEET_SECRET_{digest}"


def read_secret(ref: SecretKeyRef) -> str:
    """The Secret value in a worker; a clear error naming the Secret (never the value) when it is missing."""
    name = secret_env_name(ref)
    try:
        return os.environ[name]
    except KeyError:
        raise RuntimeError(f"Secret {ref.name!r} key {ref.key!r} is not available to this worker (env {name})") \
            from None
