"""An informer: list, then watch, one resource type into an in-memory store, with indexes and event handlers.

One per (kind, namespace, selectors) per process, shared by everything in that process that reads the type:
the operator's reconcilers and the gateway's directories read the store (never the apiserver) and react to
events. The apiserver does the selecting (label/field selectors), `transform` keeps only what readers need
(a projection: thousands of Pods cost little), and:
- a watch that ends is resumed from the last resourceVersion seen (bookmarks keep it fresh on quiet types);
- 410 Gone (the version fell out of the apiserver's window) lists again at once, and the list is diffed
  against the store, so handlers see the deletions and changes the watch missed;
- other failures list again after a jittered backoff, with `healthy` False and `broken_since` set meanwhile (a
  gateway serves from its stale store for a bounded time, then its /readyz fails: it may still hold a revoked key);
- resync_seconds re-delivers every stored object as a RESYNC event (level-triggered controllers re-check);
  relist_seconds lists again from the apiserver that often (a safety net, diffed like after a 410).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from voxfleet.kube.client import KubeClient
from voxfleet.kube.errors import Gone
from voxfleet.kube.resources import Kind, object_key, resource_type

log = structlog.get_logger("voxfleet.kube.informer")

T = TypeVar("T")
Key = tuple[str, str]  # (namespace or "", name)
ADDED, MODIFIED, DELETED, RESYNC = "ADDED", "MODIFIED", "DELETED", "RESYNC"


@dataclass(frozen=True)
class InformerEvent(Generic[T]):
    """A change to the store. new is None for DELETED, old is None for ADDED; RESYNC has new == old."""

    type: str
    key: Key
    new: T | None
    old: T | None


Handler = Callable[[InformerEvent[Any]], None]
Indexer = Callable[[Any], Iterable[str]]  # stored value -> the index values it is filed under


def by_namespace(value: Any) -> list[str]:
    """Indexer over raw objects: the namespace ("" for cluster-scoped ones). Installed as index "namespace"."""
    meta = (value.get("metadata") or {}) if isinstance(value, dict) else {}
    return [meta.get("namespace") or ""]


def by_label(label: str) -> Indexer:
    """Indexer over raw objects: the value of one label (objects without it are not indexed)."""

    def index(value: Any) -> list[str]:
        labels = ((value.get("metadata") or {}).get("labels") or {}) if isinstance(value, dict) else {}
        return [labels[label]] if label in labels else []

    return index


class Informer(Generic[T]):
    """list+watch of one resource type. `transform(obj) -> T` is what the store keeps (default: the object);
    with a transform, events fire only when the projection changes. `indexers` index the stored values (the
    "namespace" index is built in for raw objects; pass your own when transform changes the shape)."""

    def __init__(self, client: KubeClient, kind: Kind, *, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 transform: Callable[[dict[str, Any]], T] | None = None,
                 indexers: dict[str, Indexer] | None = None, resync_seconds: float | None = None,
                 relist_seconds: float | None = None, page_size: int = 500, watch_timeout_seconds: int = 290,
                 name: str = ""):
        self.client = client
        self.resource = resource_type(kind)
        self.namespace = namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.transform = transform
        self.resync_seconds, self.relist_seconds = resync_seconds, relist_seconds
        self.page_size, self.watch_timeout_seconds = page_size, watch_timeout_seconds
        self.name = name or f"{self.resource.plural}{'/' + namespace if namespace else ''}" \
                            f"{' ' + label_selector if label_selector else ''}"
        self.resource_version = ""
        self.healthy = False  # False until listed, and while the watch is broken (the store may be stale)
        self.broken_since: float | None = None  # monotonic time the watch broke, while it stays broken
        self.relists = 0  # how many times the store was listed (tests and metrics read it)
        self._store: dict[Key, T] = {}
        self._indexers: dict[str, Indexer] = dict(indexers or {})
        if transform is None:
            self._indexers.setdefault("namespace", by_namespace)
        self._indexes: dict[str, dict[str, set[Key]]] = {name: {} for name in self._indexers}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # --- reading ----------------------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first list is in the store (it stays True across relists)."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    def get(self, namespace: str | None, name: str) -> T | None:
        return self._store.get((namespace or "", name))

    def get_by_key(self, key: Key) -> T | None:
        return self._store.get(key)

    def keys(self) -> list[Key]:
        return list(self._store)

    def values(self) -> list[T]:
        return list(self._store.values())

    def items(self) -> list[tuple[Key, T]]:
        return list(self._store.items())

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: Key) -> bool:
        return key in self._store

    def by_index(self, index: str, value: str) -> list[T]:
        """Stored values filed under `value` in index `index` (KeyError for an unknown index)."""
        return [self._store[key] for key in self._indexes[index].get(value, ())]

    def index_values(self, index: str) -> list[str]:
        """The values index `index` currently has entries for."""
        return [value for value, keys in self._indexes[index].items() if keys]

    def in_namespace(self, namespace: str) -> list[T]:
        return self.by_index("namespace", namespace)

    # --- events -----------------------------------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Called synchronously after each change to the store, in the order changes happen: keep it quick
        (enqueue work). Added before start(), it sees every object as ADDED after the first list."""
        self._handlers.append(handler)

    # --- running ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run in the background of the current event loop (list, watch, relist, resync) until stop()."""
        if not self._tasks:
            self._tasks.append(asyncio.create_task(self.run(), name=f"informer {self.name}"))
            if self.resync_seconds:
                self._tasks.append(asyncio.create_task(self._resync_forever(), name=f"resync {self.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self.healthy = False

    async def run(self) -> None:
        """Forever: list, then watch from the list's version; list again on 410, on relist_seconds, or (after a
        backoff) on any failure. Cancel to stop. A store that was listed before (start() after stop()) resumes
        watching from its version: the watch sends what changed meanwhile, or 410 and it lists."""
        failures = 0
        resume = self.has_synced and bool(self.resource_version)
        while True:
            try:
                if not resume:
                    await self.relist()
                resume = False
                failures = 0
                listed_at = time.monotonic()
                while self.relist_seconds is None or time.monotonic() - listed_at < self.relist_seconds:
                    await self._watch_once(listed_at)
            except asyncio.CancelledError:
                raise
            except Gone:
                continue  # the watch's version fell out of the apiserver's window: list again at once
            except Exception as error:  # noqa: BLE001 - the store must outlive apiserver restarts and blips
                self.healthy = False
                if self.broken_since is None:
                    self.broken_since = time.monotonic()
                delay = min(10.0, 0.2 * 2 ** failures) * random.uniform(0.5, 1.0)
                failures += 1
                log.warning("watch failed, listing again", informer=self.name, error=str(error)[:300],
                            retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    async def relist(self) -> None:
        """List now and replace the store, telling handlers what differs from what it held."""
        listing = await self.client.list(self.resource, self.namespace, label_selector=self.label_selector,
                                         field_selector=self.field_selector, page_size=self.page_size)
        fresh: dict[Key, T] = {object_key(obj): self._project(obj) for obj in listing["items"]}
        old = self._store
        self._store = fresh
        self._indexes = {name: {} for name in self._indexers}
        for key, value in fresh.items():
            self._index(key, value)
        self.resource_version = listing["metadata"]["resourceVersion"]
        self.relists += 1
        self.broken_since = None
        for key in old.keys() - fresh.keys():
            self._emit(DELETED, key, None, old[key])
        for key, value in fresh.items():
            previous = old.get(key)
            if previous is None:
                self._emit(ADDED, key, value, None)
            elif self._differs(previous, value):
                self._emit(MODIFIED, key, value, previous)
        self.healthy = True
        self._synced.set()

    async def _watch_once(self, listed_at: float) -> None:
        timeout = self.watch_timeout_seconds
        if self.relist_seconds is not None:
            timeout = max(1, min(timeout, int(self.relist_seconds - (time.monotonic() - listed_at)) + 1))
        async for event in self.client.watch(self.resource, self.namespace, resource_version=self.resource_version,
                                             label_selector=self.label_selector,
                                             field_selector=self.field_selector, timeout_seconds=timeout):
            obj = event.object
            self.resource_version = (obj.get("metadata") or {}).get("resourceVersion") or self.resource_version
            if event.type == "BOOKMARK":
                continue
            key = object_key(obj)
            previous = self._store.get(key)
            if event.type == DELETED:
                if previous is not None:
                    self._unindex(key, previous)
                    del self._store[key]
                    self._emit(DELETED, key, None, previous)
                continue
            value = self._project(obj)
            if previous is not None:
                self._unindex(key, previous)
            self._store[key] = value
            self._index(key, value)
            if previous is None:
                self._emit(ADDED, key, value, None)
            elif self._differs(previous, value):
                self._emit(MODIFIED, key, value, previous)
        self.healthy = True

    async def _resync_forever(self) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(self.resync_seconds or 0)
            for key, value in list(self._store.items()):
                self._emit(RESYNC, key, value, value)

    # --- store bookkeeping ------------------------------------------------------------------------------------

    def _project(self, obj: dict[str, Any]) -> T:
        return self.transform(obj) if self.transform is not None else obj  # type: ignore[return-value]

    def _differs(self, old: Any, new: Any) -> bool:
        if self.transform is not None:
            return old != new
        # Raw objects: the apiserver bumps resourceVersion on every change, and only then.
        return (old.get("metadata") or {}).get("resourceVersion") != (new.get("metadata") or {}).get(
            "resourceVersion")

    def _index(self, key: Key, value: T) -> None:
        for name, indexer in self._indexers.items():
            for index_value in indexer(value):
                self._indexes[name].setdefault(index_value, set()).add(key)

    def _unindex(self, key: Key, value: T) -> None:
        for name, indexer in self._indexers.items():
            for index_value in indexer(value):
                keys = self._indexes[name].get(index_value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._indexes[name][index_value]

    def _emit(self, event_type: str, key: Key, new: T | None, old: T | None) -> None:
        event = InformerEvent(event_type, key, new, old)
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - one handler's bug must not stop the store every reader depends on
                log.exception("informer handler failed", informer=self.name, key=key)
