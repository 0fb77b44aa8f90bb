"""The Tenants the gateway knows (cluster-scoped, watched): namespace, allowed regions and quotas by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from voxfleet.api.tenant import PLURAL, TenantSpec
from voxfleet.api.voiceagent import GROUP, VERSION
from voxfleet.gateway.kube_client import KubeClient, namespaced_path
from voxfleet.gateway.watch_cache import WatchCache

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TenantInfo:
    name: str
    namespace: str
    spec: TenantSpec


class TenantDirectory:
    def __init__(self, kube: KubeClient):
        self.cache = WatchCache(kube, namespaced_path(GROUP, VERSION, PLURAL, None), name="tenants")
        self.cache.subscribe(self._forget_deleted)
        self._parsed: dict[str, tuple[str, TenantInfo | None]] = {}  # name -> (resourceVersion, info)

    def get(self, name: str) -> TenantInfo | None:
        obj = self.cache.get("", name)
        if obj is None:
            return None
        return self._parse(obj)

    def _parse(self, obj: dict[str, Any]) -> TenantInfo | None:
        meta = obj["metadata"]
        cached = self._parsed.get(meta["name"])
        if cached is not None and cached[0] == meta.get("resourceVersion"):
            return cached[1]
        try:
            spec = TenantSpec.model_validate(obj.get("spec") or {})
            info: TenantInfo | None = TenantInfo(meta["name"], spec.namespace_for(meta["name"]), spec)
        except ValidationError as error:
            log.warning("tenant spec does not parse; its keys are refused", tenant=meta["name"],
                        errors=error.error_count())
            info = None
        self._parsed[meta["name"]] = (meta.get("resourceVersion", ""), info)
        return info

    def _forget_deleted(self, event_type: str, _new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if event_type == "DELETED" and old is not None:
            self._parsed.pop(old["metadata"]["name"], None)
