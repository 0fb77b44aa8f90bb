"""List-then-watch of one kind of built-in object into an in-memory map of small projections (an informer).

Pods, Deployments and Nodes change often and there are thousands of them in a big fleet, so the selection is
done by the apiserver (label selectors) and only the few fields the operator reasons about are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import structlog

from voxfleet.operator.kube_client import Gone, KubeClient, resource_path

log = structlog.get_logger("voxfleet.operator.watch")
T = TypeVar("T")
Key = tuple[str, str]  # (namespace or "", name)
# (key, old projection or None, new projection or None: deleted)
ChangeFn = Callable[[Key, Any, Any], None]


def object_key(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class WatchCache(Generic[T]):
    def __init__(self, client: KubeClient, kind: str, project: Callable[[dict[str, Any]], T], *,
                 label_selector: str | None = None, field_selector: str | None = None, namespace: str | None = None,
                 on_change: ChangeFn | None = None, page_size: int = 500):
        self.client, self.kind, self.project = client, kind, project
        self.params: dict[str, str] = {}
        if label_selector:
            self.params["labelSelector"] = label_selector
        if field_selector:
            self.params["fieldSelector"] = field_selector
        self.path = resource_path(kind, namespace)
        self.on_change = on_change
        self.page_size = page_size
        self.items: dict[Key, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""

    def get(self, namespace: str, name: str) -> T | None:
        return self.items.get((namespace, name))

    def values(self) -> list[T]:
        return list(self.items.values())

    async def run(self) -> None:
        """Forever: list, then watch; list again when the watch expires or fails."""
        backoff = 0.5
        while True:
            try:
                await self._list()
                backoff = 0.5
                while True:
                    await self._watch()
            except asyncio.CancelledError:
                raise
            except Gone:
                continue  # the watch's version expired: relist at once
            except Exception as error:  # noqa: BLE001 - a watch must survive apiserver restarts and blips
                log.warning("watch failed, listing again", kind=self.kind, error=str(error), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _list(self) -> None:
        fresh: dict[Key, T] = {}
        params = dict(self.params, limit=str(self.page_size))
        while True:
            page = await self.client.request("GET", self.path, params=params)
            for obj in page.get("items") or []:
                fresh[object_key(obj)] = self.project(obj)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params["continue"] = token
        self.resource_version = page["metadata"]["resourceVersion"]
        old = self.items
        self.items = fresh
        for key in old.keys() - fresh.keys():
            self._changed(key, old[key], None)
        for key, value in fresh.items():
            if old.get(key) != value:
                self._changed(key, old.get(key), value)
        self.synced.set()

    async def _watch(self) -> None:
        async for event in self.client.watch(self.path, resource_version=self.resource_version, params=self.params):
            kind, obj = event["type"], event["object"]
            self.resource_version = obj["metadata"].get("resourceVersion") or self.resource_version
            if kind == "BOOKMARK":
                continue
            key = object_key(obj)
            old = self.items.get(key)
            if kind == "DELETED":
                self.items.pop(key, None)
                self._changed(key, old, None)
                continue
            new = self.project(obj)
            self.items[key] = new
            if new != old:
                self._changed(key, old, new)

    def _changed(self, key: Key, old: Any, new: Any) -> None:
        if self.on_change is not None:
            try:
                self.on_change(key, old, new)
            except Exception:  # noqa: BLE001 - a bad callback must not stop the watch
                log.exception("watch callback failed", kind=self.kind, key=key)
