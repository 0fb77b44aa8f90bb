"""A live in-memory copy of one kind of Kubernetes object: list once, then watch, forever.

Every gateway replica keeps its own copy of API keys, Tenants, VoiceAgents and worker Pods this way, so
answering a request never waits on the apiserver and a change (a revoked key, a worker gone) reaches every
replica as soon as the apiserver sends the watch event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from voxfleet.gateway.kube_client import KubeApiError, KubeClient

log = structlog.get_logger(__name__)

Key = tuple[str, str]  # (namespace or "", name)
Listener = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]  # (type, new, old)


def object_key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


class WatchCache:
    def __init__(self, kube: KubeClient, path: str, *, label_selector: str | None = None, name: str = ""):
        self.kube = kube
        self.path = path
        self.label_selector = label_selector
        self.name = name or path
        self.objects: dict[Key, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        # False while the watch is broken: the copy may be stale (a revoked key still in it), so /readyz says
        # not ready and load balancers stop sending this replica requests until the watch is back.
        self.healthy = False
        self._listeners: list[Listener] = []
        self._task: asyncio.Task | None = None

    def subscribe(self, listener: Listener) -> None:
        """Called synchronously for every change, after the copy is updated: keep it quick."""
        self._listeners.append(listener)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))

    def values(self) -> list[dict[str, Any]]:
        return list(self.objects.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"watch {self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def wait_synced(self, timeout: float) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                resource_version = await self._relist()
                backoff = 0.2
                while True:
                    resource_version = await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except _Expired:
                continue  # the resourceVersion fell out of the apiserver's window: list again at once
            except (KubeApiError, httpx.HTTPError, ValueError, KeyError) as error:
                self.healthy = False
                log.warning("watch failed; listing again", resource=self.name, error=str(error)[:300],
                            retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _relist(self) -> str:
        params: dict[str, Any] = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        listing = await self.kube.get(self.path, **params)
        fresh = {object_key(item): item for item in listing.get("items") or []}
        old = self.objects
        self.objects = fresh
        # Tell listeners what changed while we were not watching (deletions included).
        for key in old.keys() - fresh.keys():
            self._notify("DELETED", None, old[key])
        for key, item in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._notify("ADDED", item, None)
            elif (previous.get("metadata") or {}).get("resourceVersion") != item["metadata"].get("resourceVersion"):
                self._notify("MODIFIED", item, previous)
        self.synced.set()
        self.healthy = True
        return listing["metadata"]["resourceVersion"]

    async def _watch(self, resource_version: str) -> str:
        async for event_type, obj in self.kube.watch(self.path, resource_version=resource_version,
                                                     label_selector=self.label_selector):
            if event_type == "ERROR":
                if obj.get("code") == 410:
                    raise _Expired()
                raise KubeApiError(int(obj.get("code") or 500), obj)
            resource_version = obj["metadata"]["resourceVersion"]
            if event_type == "BOOKMARK":
                continue
            key = object_key(obj)
            previous = self.objects.get(key)
            if event_type == "DELETED":
                self.objects.pop(key, None)
                self._notify("DELETED", None, obj)
            else:
                self.objects[key] = obj
                self._notify("ADDED" if previous is None else "MODIFIED", obj, previous)
        return resource_version

    def _notify(self, event_type: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        for listener in self._listeners:
            try:
                listener(event_type, new, old)
            except Exception:  # a listener's bug must not stop the watch that every request depends on
                log.exception("watch listener failed", resource=self.name)


class _Expired(Exception):
    pass
