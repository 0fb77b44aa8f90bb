"""The gateway's view of tenant API keys: the hashes from the key Secrets, kept current by a watch.

A revoked key is a deleted Secret; the watch removes it from this index the moment the apiserver reports the
deletion, so every replica refuses the key within the watch's latency (milliseconds), with no cache TTL.
"""

from __future__ import annotations

from typing import Any

from voxfleet.gateway import api_keys
from voxfleet.kube.client import KubeClient
from voxfleet.kube.informer import Informer, InformerEvent


class KeyStore:
    def __init__(self, kube: KubeClient, namespace: str):
        self.cache: Informer[dict[str, Any]] = Informer(kube, "Secret", namespace=namespace,
                                                        label_selector=api_keys.KEY_SECRET_SELECTOR,
                                                        name="api-key secrets")
        self._by_id: dict[str, api_keys.StoredKey] = {}
        self.cache.add_handler(self._on_change)

    def _on_change(self, event: InformerEvent[dict[str, Any]]) -> None:
        new, old = event.new, event.old
        if old is not None:
            stale = api_keys.from_secret(old)
            if stale is not None and self._by_id.get(stale.key_id) == stale:
                del self._by_id[stale.key_id]
        if new is not None:
            stored = api_keys.from_secret(new)
            if stored is not None:
                self._by_id[stored.key_id] = stored

    def authenticate(self, presented: str) -> api_keys.StoredKey | None:
        """The stored key the presented one matches, or None (malformed, unknown or revoked alike)."""
        parsed = api_keys.parse(presented)
        if parsed is None:
            return None
        key_id, key = parsed
        stored = self._by_id.get(key_id)
        if stored is None:
            api_keys.matches(key, "0" * 64)  # same work for unknown ids as for known ones
            return None
        return stored if api_keys.matches(key, stored.hex_digest) else None
