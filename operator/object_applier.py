"""Server-side apply that skips what is already in place.

It remembers, per object, the hash of the manifest it last applied and the version the apiserver answered with.
The next apply of the same manifest is skipped while the watched object still has that version; a hand edit or
deletion changes the version, so the object is applied again (and the watch that saw it queues the reconcile).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from voxfleet.kube.client import KubeClient
from voxfleet.operator.metrics import OperatorMetrics
from voxfleet.operator.ownership import MANAGER

ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name)
VersionOf = Callable[[str, str, str], str | None]  # what the watches see now, None when unwatched or gone


def object_key(manifest: dict[str, Any]) -> ObjectKey:
    meta = manifest["metadata"]
    return manifest["kind"], meta.get("namespace") or "", meta["name"]


_VOLATILE = ("resourceVersion", "managedFields", "generation")


def version_of(obj: dict[str, Any]) -> str:
    """metadata.generation where the kind has one; else a hash of the object without its status and volatile
    metadata, so a controller writing status (ResourceQuota usage) doesn't look like a hand edit."""
    meta = obj.get("metadata") or {}
    if meta.get("generation"):
        return str(meta["generation"])
    # apiVersion/kind: watch events and apply responses carry them, list items don't.
    stable = {k: v for k, v in obj.items() if k not in ("status", "metadata", "apiVersion", "kind")}
    stable["metadata"] = {k: v for k, v in meta.items() if k not in _VOLATILE}
    return "h" + hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]


class ObjectApplier:
    def __init__(self, client: KubeClient, live_version: VersionOf, metrics: OperatorMetrics):
        self.client = client
        self.live_version = live_version
        self.metrics = metrics
        self.applied: dict[ObjectKey, tuple[str, str]] = {}  # key -> (manifest hash, version after our apply)

    def our_version(self, key: ObjectKey) -> str | None:
        entry = self.applied.get(key)
        return entry[1] if entry else None

    async def apply(self, manifest: dict[str, Any]) -> bool:
        """Apply unless already in place; True when a request was sent."""
        key = object_key(manifest)
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        previous = self.applied.get(key)
        # Skip when nothing changed since our last apply: same manifest, and the watch shows our version (or has
        # not caught up yet: a deletion or someone else's edit shows up there, and forgets or changes it).
        if previous is not None and previous[0] == digest and self.live_version(*key) in (None, previous[1]):
            return False
        result = await self.client.apply(manifest, field_manager=MANAGER)
        self.applied[key] = (digest, version_of(result))
        self.metrics.applies.labels(kind=key[0]).inc()
        return True

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete; False when it was already gone."""
        self.applied.pop((kind, namespace, name), None)
        return await self.client.delete(kind, name, namespace or None) is not None

    def forget_one(self, key: ObjectKey) -> None:
        self.applied.pop(key, None)

    def forget(self, predicate: Callable[[ObjectKey], bool]) -> None:
        for key in [k for k in self.applied if predicate(k)]:
            del self.applied[key]

    def forget_all(self) -> None:
        self.applied.clear()
