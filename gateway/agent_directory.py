"""The VoiceAgents the gateway knows (all tenant namespaces, watched), parsed once per resourceVersion.

Starting a session reads the agent from here, never from the apiserver: a session costs no apiserver request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api.voiceagent import GROUP, PLURAL, STORED_SPEC_FOR_ROUTING, VERSION, VoiceAgentSpec
from voxfleet.gateway.kube_client import KubeClient, namespaced_path
from voxfleet.gateway.watch_cache import WatchCache

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
        self.cache = WatchCache(kube, namespaced_path(GROUP, VERSION, PLURAL, None), name="voiceagents")
        self.cache.subscribe(self._forget_deleted)
        self._parsed: dict[tuple[str, str], tuple[str, AgentInfo | None]] = {}

    def get(self, namespace: str, name: str) -> AgentInfo | None:
        obj = self.cache.get(namespace, name)
        return None if obj is None else self.parse(obj)

    def in_namespace(self, namespace: str) -> list[dict[str, Any]]:
        return [obj for (ns, _), obj in self.cache.objects.items() if ns == namespace]

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

    def _forget_deleted(self, event_type: str, _new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if event_type == "DELETED" and old is not None:
            self._parsed.pop((old["metadata"].get("namespace", ""), old["metadata"]["name"]), None)
