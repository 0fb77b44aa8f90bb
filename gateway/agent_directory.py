"""The VoiceAgents the gateway knows (all tenant namespaces, watched), parsed once per resourceVersion.

Starting a session reads the agent from here, never from the apiserver: a session costs no apiserver request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api.voiceagent import STORED_SPEC_FOR_ROUTING, VoiceAgentSpec
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import DELETED, Informer, InformerEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AgentInfo:
    namespace: str
    name: str
    spec: VoiceAgentSpec
    obj: dict[str, Any]

    @property
    def regions(self) -> list[str]:
        return [region.name for region in self.spec.regions]


class AgentDirectory:
    def __init__(self, kube: KubeClient):
        self.cache: Informer[dict[str, Any]] = Informer(kube, "VoiceAgent", name="voiceagents")
        self.cache.add_handler(self._forget_deleted)
        self._parsed: dict[tuple[str, str], tuple[str, AgentInfo | None]] = {}

    def get(self, namespace: str, name: str) -> AgentInfo | None:
        obj = self.cache.get(namespace, name)
        return None if obj is None else self.parse(obj)

    def in_namespace(self, namespace: str) -> list[dict[str, Any]]:
        return self.cache.in_namespace(namespace)

    def parse(self, obj: dict[str, Any]) -> AgentInfo | None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == meta.get("resourceVersion"):
            return cached[1]
        try:
            # Routing needs no RE2 compile nor schema meta-validation (admission and the worker do those): this
            # runs on the event loop, in a session's request.
            spec = VoiceAgentSpec.model_validate(obj.get("spec") or {}, context=STORED_SPEC_FOR_ROUTING)
            info: AgentInfo | None = AgentInfo(key[0], key[1], spec, obj)
        except ValidationError as error:
            log.warning("voiceagent spec does not parse; sessions refused", namespace=key[0], agent=key[1],
                        errors=error.error_count())
            info = None
        self._parsed[key] = (meta.get("resourceVersion", ""), info)
        return info

    def _forget_deleted(self, event: InformerEvent[dict[str, Any]]) -> None:
        if event.type == DELETED:
            self._parsed.pop(event.key, None)
